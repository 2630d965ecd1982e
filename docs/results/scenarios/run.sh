#!/usr/bin/env bash
# re-measure every per-scenario table of the README (#12: vLLM memory accounting, paper scenarios on vllm-v0)
set -u
cd /work/main
P=round-robin,random,least-requests,least-tokens,power-of-two,min-min,max-capacity,workload-aware,prefix-aware,rl-baseline,rl-aware,rl-guided,llm-d,llm-d-load-aware,dynamo-kv,sglang-cache-aware,aibrix-least-kv-cache,aibrix-least-latency,production-stack-prefix,production-stack-load-aware
O=docs/results/scenarios
for s in paper-v100 paper-a100 paper-a100-chunked paper-8x; do
  /usr/bin/time -f "$s wall %e s" .venv/bin/phaser bench --scenario $s --policies $P --repeat 5 --json $O/$s.json --markdown $O/$s.md > $O/$s.log 2>&1
done
for s in azure-conv azure-code prefix-heavy; do
  /usr/bin/time -f "$s wall %e s" .venv/bin/phaser bench --scenario $s --policies $P --repeat 1 --json $O/$s.json --markdown $O/$s.md > $O/$s.log 2>&1
done
for s in paper-v100-16gb paper-a10g; do
  /usr/bin/time -f "$s wall %e s" .venv/bin/phaser bench --scenario $s --rate 3,5 --policies round-robin,least-requests,workload-aware,llm-d,dynamo-kv,production-stack-load-aware,sglang-cache-aware,aibrix-least-kv-cache,rl-guided --repeat 5 --json $O/$s.json --markdown $O/$s.md > $O/$s.log 2>&1
done
echo ALL DONE
