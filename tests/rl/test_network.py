"""The numpy forward pass used for routing equals the Flax network it mirrors."""

import jax
import numpy as np
import pytest

from phaser.rl import inference, network


@pytest.mark.parametrize("width", [6, 8])  # per-instance block of feature spec v1 / v2
@pytest.mark.parametrize("arch", ["mlp", "shared"])
@pytest.mark.parametrize("n", [4, 16])
def test_numpy_forward_matches_flax(arch, n, width):
    net = network.build(arch, n, (64, 64))
    params = network.init_params(net, n, jax.random.PRNGKey(3), 3 + width * n)
    x = np.random.default_rng(0).random((7, 3 + width * n), dtype=np.float32)
    q_flax = np.asarray(net.apply({"params": params}, x))
    flat = network.flatten(params)
    q_np = inference.forward_np(flat, x, arch, n, 2)
    assert q_np.shape == (7, n + 1)
    np.testing.assert_allclose(q_np, q_flax, rtol=1e-5, atol=1e-5)
    # single vector too (the router's path)
    np.testing.assert_allclose(inference.forward_np(flat, x[0], arch, n, 2), q_flax[0], rtol=1e-5, atol=1e-5)
    # flat -> nested -> flat is lossless
    again = network.flatten(network.unflatten(flat))
    assert all(np.array_equal(again[k], flat[k]) for k in flat)


def test_shared_network_scores_any_instance_count_with_same_weights():
    net4 = network.build("shared", 4, (16, 16))
    flat = network.flatten(network.init_params(net4, 4, jax.random.PRNGKey(0)))
    x8 = np.random.default_rng(1).random(3 + 8 * 8, dtype=np.float32)  # spec v2: 8 per instance
    q8 = inference.forward_np(flat, x8, "shared", 8, 2)
    assert q8.shape == (9,)
    # permuting instances permutes their scores (weights are shared across instances)
    g, inst = x8[:3], x8[3:].reshape(8, 8)
    perm = np.array([3, 1, 7, 0, 2, 6, 5, 4])
    xp = np.concatenate([g, inst[perm].ravel()])
    qp = inference.forward_np(flat, xp, "shared", 8, 2)
    np.testing.assert_allclose(qp[:8], q8[:8][perm], rtol=1e-5, atol=1e-6)
    assert qp[8] == pytest.approx(q8[8], rel=1e-5)


def test_state_that_does_not_split_into_instance_blocks_is_refused():
    with pytest.raises(ValueError, match="does not split"):
        inference.split_state(np.zeros(3 + 8 * 4 + 1, np.float32), 4)
