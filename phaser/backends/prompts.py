"""Prompts of a requested length for a real engine.

A trace gives prompt *lengths* (and, for prefix-sharing traces, block ids of
shared prefixes), not texts. The worker must still send the engine a prompt
that is exactly that many of *its* tokens, distinct per request (or an
engine's prefix cache would serve every prompt after the first for free),
and sharing exactly the blocks the trace says are shared.

Decisions:

* **Token ids, not text**, whenever the engine can tell us its vocabulary:
  the OpenAI completions API accepts ``prompt`` as a list of token ids (vLLM,
  SGLang, llama.cpp server do). The pool of ids comes from tokenizing
  ``POOL_TEXT`` (ordinary English words) with the engine's tokenize endpoint,
  so every id is a real, printable token of that model.
* **Per request**, tokens are drawn from the pool by a generator seeded with
  the request id (reproducible, different per request). A shared prefix block
  id ``b`` always maps to the same ``block_tokens`` tokens (seeded by ``b``),
  so two requests that share blocks share exactly those tokens.
* **Approximation without a tokenizer**: ``text_prompt`` joins words of
  ``POOL_TEXT``, one word per requested token. Common English words with
  their leading space are one token in GPT-2-style BPE vocabularies; the
  engine's ``usage.prompt_tokens`` then records the true count.
"""

from __future__ import annotations

import hashlib

import numpy as np

POOL_TEXT = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there one all we their been has when who will more no if out so said what up its about into "
    "than them can only other new some could time these two may then do first any my now such like our over man "
    "me even most made after also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see men work long get "
    "here between both life being under never day same another know while last might us great old year off come "
    "since against go came right used take three states himself few house use during without again place around "
    "however home small found thought went say part once general high upon school every does got united left "
    "number course war until always away something fact though water less public put think almost hand enough "
    "far took head yet government system better set told nothing night end why called didn find going look asked "
    "later point knew city next program business give group toward young days let room president side social "
    "given present several order national possible rather second face per among form important often things "
    "looked early white case john become large big need four within felt along children saw best church ever "
    "least power development light thing seemed family interest want members mind country area others done "
    "turned although open problem sense")


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little"))


def token_prompt(request_id: str, prompt_tokens: int, pool: list[int], prefix_ids=(), block_tokens: int = 16) -> list[int]:
    """``prompt_tokens`` ids from ``pool``: the shared prefix blocks first, then
    tokens unique to this request."""
    if not pool:
        raise ValueError("empty token pool")
    ids = np.asarray(pool, np.int64)
    out: list[int] = []
    for b in prefix_ids or ():
        if len(out) >= prompt_tokens:
            break
        out.extend(ids[_rng(f"block:{b}").integers(0, len(ids), block_tokens)].tolist())
    out = out[:prompt_tokens]
    rest = prompt_tokens - len(out)
    if rest > 0:
        out.extend(ids[_rng(f"req:{request_id}").integers(0, len(ids), rest)].tolist())
    return out


def text_prompt(request_id: str, prompt_tokens: int) -> str:
    """The documented approximation when the engine has no tokenize endpoint."""
    words = POOL_TEXT.split()
    pick = _rng(f"req:{request_id}").integers(0, len(words), max(1, prompt_tokens))
    return " ".join(words[i] for i in pick)
