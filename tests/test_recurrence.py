"""Recurrent policies' numerics: the sequence machinery against independent references.

- With its recurrence switched off (a GRU whose state cannot reach its output), the
  recurrent actor and critic equal a feed-forward network of the same weights: log-probs,
  values and the whole PPO loss.
- The gradient of PPO's loss on a minibatch of whole sequences equals the gradient of the
  same loss written as a plain Python loop over time steps, with a hand-written GRU (float64).
- Resets, on hand-built episode ends: the state after a terminated and after a truncated
  step restarts from zeros, and ``V(final_obs)`` at the truncation is computed from the
  state before the reset; the same checks fail when the reset is removed.
- A collected batch re-run over its sequences reproduces the rollout's log-probs and values
  (so the rollout's resets and the sequences' start flags agree); without the rollout's
  reset it does not.
- Fisher-vector products through a GRU equal the dense Fisher (float64), every step or
  every k-th step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxpo
from jaxpo import Config, envs
from jaxpo.algos.natural import fisher_outputs
from jaxpo.algos.ppo import make_ppo_loss
from jaxpo.batches import SampleBatch
from jaxpo.collect import make_sample_collect
from jaxpo.natgrad import make_fisher_vector_product
from jaxpo.networks import distribution, make_networks
from jaxpo.recurrence import Sequences, bootstrap_values, episode_starts, step, unroll
from jaxpo.train import init_params, make_env, make_trainer

B, T, OBS, CELL = 3, 5, 4, 6
GRU_CONFIG = Config(
    env_id="gymnax:CartPole-v1",
    hidden_sizes=(8,),
    cell="gru",
    cell_size=CELL,
    num_envs=B,
    num_steps=T,
    num_minibatches=1,
)


def networks_and_params(config: Config, seed: int = 0):
    nets = make_networks(config, make_env(config))
    keys = jax.random.split(jax.random.key(seed))
    return nets, init_params(nets, keys[0], keys[1], jnp.zeros((1, OBS)))


def gru(params: dict) -> dict:
    return params["params"]["MLP_0"]["Recurrence_0"]["ScanResetCell_0"]["GRUCell_0"]


def random_inputs(rng: np.random.Generator, dtype=np.float32):
    obs = rng.normal(size=(B, T, OBS)).astype(dtype)
    start = rng.random((B, T)) < 0.3
    start[:, 0] = False
    carry = {n: rng.normal(size=(B, CELL)).astype(dtype) for n in ("actor", "critic")}
    return obs, start, carry


def random_sample_batch(rng, obs, dtype=np.float32) -> SampleBatch:
    def arr(x):
        return jnp.asarray(np.asarray(x, dtype))

    return SampleBatch(
        obs=obs,
        action=jnp.asarray(rng.integers(0, 2, size=(B, T))),
        log_prob=arr(np.log(rng.uniform(0.3, 0.7, size=(B, T)))),
        values=arr(rng.normal(size=(B, T))),
        advantages=arr(rng.normal(size=(B, T))),
        returns=arr(rng.normal(size=(B, T))),
    )


# ------------------------------------------------------------- recurrence switched off


def switched_off(net_params: dict) -> dict:
    """The GRU with no path from its state to its output: recurrent kernels 0, b_hn = 0 and
    an update-gate bias of -40, so z = sigmoid(.) ~ 4e-18 and h' = (1 - z)·n + z·h rounds to
    n = tanh(x·W_in + b_in) in float32 whatever h is."""
    p = jax.tree.map(lambda x: x, net_params)
    cell = gru(p)
    for name in ("hr", "hz", "hn"):
        cell[name]["kernel"] = jnp.zeros_like(cell[name]["kernel"])
    cell["hn"]["bias"] = jnp.zeros_like(cell["hn"]["bias"])
    cell["iz"]["kernel"] = jnp.zeros_like(cell["iz"]["kernel"])
    cell["iz"]["bias"] = jnp.full_like(cell["iz"]["bias"], -40.0)
    return p


def feed_forward_twin(net_params: dict) -> dict:
    """The feed-forward MLP (hidden 8, then CELL tanh units) with the same weights: its
    second hidden layer is the GRU's candidate n = tanh(x·W_in + b_in)."""
    mlp = net_params["params"]["MLP_0"]
    cell = gru(net_params)
    layers = {
        "Dense_0": mlp["Dense_0"],
        "Dense_1": {"kernel": cell["in"]["kernel"], "bias": cell["in"]["bias"]},
        "Dense_2": mlp["Dense_1"],
    }
    return {"params": {"MLP_0": layers}}


def test_recurrence_switched_off_equals_the_feed_forward_policy():
    rng = np.random.default_rng(0)
    nets, params = networks_and_params(GRU_CONFIG)
    off = {name: switched_off(p) for name, p in params.items()}
    ff_config = GRU_CONFIG.replace(cell="none", hidden_sizes=(8, CELL))
    ff_nets = make_networks(ff_config, make_env(ff_config))
    ff = {name: feed_forward_twin(p) for name, p in off.items()}

    obs, start, carry = random_inputs(rng)
    seq = Sequences(jnp.asarray(obs), jnp.asarray(start), carry)
    batch = random_sample_batch(rng, seq)
    flat_batch = jax.tree.map(lambda x: x.reshape((B * T, *x.shape[2:])), batch._replace(obs=obs))

    logits, _ = nets.actor.apply(off["actor"], seq)
    ff_logits, _ = ff_nets.actor.apply(ff["actor"], flat_batch.obs)
    np.testing.assert_allclose(logits.reshape(B * T, -1), ff_logits, rtol=1e-6, atol=1e-7)
    values = nets.critic.apply(off["critic"], seq)
    ff_values = ff_nets.critic.apply(ff["critic"], flat_batch.obs)
    np.testing.assert_allclose(values.reshape(-1), ff_values, rtol=1e-6, atol=1e-7)

    hparams = jaxpo.default_hparams(GRU_CONFIG)
    loss, metrics = make_ppo_loss(GRU_CONFIG, hparams, nets)(off, batch, ())
    ff_loss, ff_metrics = make_ppo_loss(ff_config, hparams, ff_nets)(ff, flat_batch, ())
    np.testing.assert_allclose(loss, ff_loss, rtol=1e-6)
    for name, value in ff_metrics.items():
        np.testing.assert_allclose(metrics[name], value, rtol=1e-5, atol=1e-7, err_msg=name)

    # the limit is a real one: with the GRU's own weights the state reaches the outputs
    on_logits, _ = nets.actor.apply(params["actor"], seq)
    zero = seq._replace(carry=jax.tree.map(jnp.zeros_like, carry))
    assert np.abs(on_logits - nets.actor.apply(params["actor"], zero)[0]).max() > 1e-4
    assert np.abs(logits - nets.actor.apply(off["actor"], zero)[0]).max() == 0.0


# ------------------------------------------------ whole sequences against a loop over time


def sigmoid(x):
    return 1.0 / (1.0 + jnp.exp(-x))


def hand_gru(cell: dict, h, x):
    """Cho et al.'s GRU as flax writes it (r applied to W_hn·h + b_hn)."""
    r = sigmoid(x @ cell["ir"]["kernel"] + cell["ir"]["bias"] + h @ cell["hr"]["kernel"])
    z = sigmoid(x @ cell["iz"]["kernel"] + cell["iz"]["bias"] + h @ cell["hz"]["kernel"])
    n = jnp.tanh(
        x @ cell["in"]["kernel"]
        + cell["in"]["bias"]
        + r * (h @ cell["hn"]["kernel"] + cell["hn"]["bias"])
    )
    return (1.0 - z) * n + z * h


def hand_network(net_params: dict, obs, start, h0):
    """Outputs ``[B, T, out]`` by a Python loop over time: tanh layer, GRU, linear head."""
    mlp = net_params["params"]["MLP_0"]
    h, outputs = h0, []
    for t in range(obs.shape[1]):
        x = jnp.tanh(obs[:, t] @ mlp["Dense_0"]["kernel"] + mlp["Dense_0"]["bias"])
        h = jnp.where(start[:, t, None], 0.0, h)
        h = hand_gru(gru(net_params), h, x)
        outputs.append(h @ mlp["Dense_1"]["kernel"] + mlp["Dense_1"]["bias"])
    return jnp.stack(outputs, axis=1)


def hand_ppo_loss(params, batch: SampleBatch, obs, start, carry, clip, vf_coef, ent_coef):
    """PPO-clip + c_v·½(V − R)² − c_e·H, averaged over every step of every sequence."""
    logits = hand_network(params["actor"], obs, start, carry["actor"])
    log_p = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
    taken = jnp.take_along_axis(log_p, batch.action[..., None], axis=-1)[..., 0]
    ratio = jnp.exp(taken - batch.log_prob)
    adv = batch.advantages
    policy = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - clip, 1 + clip) * adv)
    values = hand_network(params["critic"], obs, start, carry["critic"])[..., 0]
    value = 0.5 * (values - batch.returns) ** 2
    entropy = -(jnp.exp(log_p) * log_p).sum(-1)
    return policy.mean() + vf_coef * value.mean() - ent_coef * entropy.mean()


def test_sequence_gradient_equals_a_python_loop_over_time_float64():
    config = GRU_CONFIG.replace(normalize_advantages=False, clip_value_loss=False)
    rng = np.random.default_rng(1)
    nets, params = networks_and_params(config, seed=2)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
        obs, start, carry = random_inputs(rng, np.float64)
        carry = jax.tree.map(jnp.asarray, carry)
        seq = Sequences(jnp.asarray(obs), jnp.asarray(start), carry)
        batch = random_sample_batch(rng, seq, np.float64)
        hparams = jaxpo.default_hparams(config, ent_coef=0.05)
        loss_fn = make_ppo_loss(config, hparams, nets)
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, ())
        coefs = (0.2, 0.5, 0.05)  # the hparams' clip_eps and vf_coef, the ent_coef above
        assert np.allclose([hparams.clip_eps, hparams.vf_coef, hparams.ent_coef], coefs, rtol=1e-6)

        def reference(p):
            return hand_ppo_loss(p, batch, obs, start, carry, *coefs)

        want, want_grads = jax.value_and_grad(reference)(params)
        assert loss.dtype == jnp.float64
        np.testing.assert_allclose(loss, want, rtol=1e-6)
        got_flat, _ = ravel_pytree(grads)
        want_flat, _ = ravel_pytree(want_grads)
        assert np.abs(want_flat).max() > 1e-3
        # the clip coefficient is traced in float32, so agreement is to its rounding
        np.testing.assert_allclose(got_flat, want_flat, rtol=1e-6, atol=1e-9)
        # the recurrent kernels get gradient through time (not only the input path)
        assert np.abs(np.asarray(gru(grads["actor"])["hr"]["kernel"])).max() > 1e-6


# ----------------------------------------------------------------------- resets, by hand

#: two environments, six steps: env 0 terminates at step 1, env 1 is truncated at step 3
TERMINATED = np.zeros((6, 2), bool)
TERMINATED[1, 0] = True
TRUNCATED = np.zeros((6, 2), bool)
TRUNCATED[3, 1] = True


def check_resets(critic, params, rng) -> None:
    """Raises AssertionError unless the state restarts after each episode end and the
    truncation's bootstrap reads the state from before the reset."""
    done = TERMINATED | TRUNCATED
    obs = jnp.asarray(rng.normal(size=(2, 6, OBS)).astype(np.float32))
    final_obs = jnp.asarray(rng.normal(size=(2, 6, OBS)).astype(np.float32))
    h0 = jnp.asarray(rng.normal(size=(2, CELL)).astype(np.float32))
    seq = Sequences(obs, episode_starts(jnp.asarray(done)), {"critic": h0})
    values, next_values, states = bootstrap_values(critic, params, seq, final_obs)

    def fresh(env: int, t: int):
        """The state after step t of an episode that began at step t (from zeros)."""
        carry, _ = step(critic, params, jnp.zeros((1, CELL)), obs[env : env + 1, t])
        return carry[0]

    # after the termination (env 0, step 1) and the truncation (env 1, step 3)
    np.testing.assert_allclose(states[0, 2], fresh(0, 2), atol=1e-6)
    np.testing.assert_allclose(states[1, 4], fresh(1, 4), atol=1e-6)
    # ... and what came before no longer matters
    changed = obs.at[0, :2].set(0.0).at[1, :4].set(0.0)
    _, again = unroll(critic, params, seq._replace(obs=changed))
    np.testing.assert_allclose(again[0, 2:], states[0, 2:], atol=1e-6)
    np.testing.assert_allclose(again[1, 4:], states[1, 4:], atol=1e-6)
    # V(final_obs) at the truncation: the cell on final_obs from the state after step 3
    _, before = step(critic, params, states[1:2, 3], final_obs[1:2, 3])
    _, after = step(critic, params, jnp.zeros((1, CELL)), final_obs[1:2, 3])
    np.testing.assert_allclose(next_values[1, 3], before[0], rtol=1e-6)
    assert abs(float(before[0] - after[0])) > 1e-4
    # inside an episode V(next_obs) is the next step's value when next_obs is the next obs
    _, inside = bootstrap_values(critic, params, seq, jnp.roll(obs, -1, axis=1))[:2]
    np.testing.assert_allclose(inside[0, 2:5], values[0, 3:6], rtol=1e-5, atol=1e-6)


def test_state_resets_after_termination_and_truncation_and_bootstraps_before_it():
    nets, params = networks_and_params(GRU_CONFIG)
    check_resets(nets.critic, params["critic"], np.random.default_rng(3))


def test_the_reset_checks_fail_without_the_reset(monkeypatch):
    import jaxpo.recurrence

    nets, params = networks_and_params(GRU_CONFIG)
    monkeypatch.setattr(jaxpo.recurrence, "reset_carry", lambda carry, done: carry)
    with pytest.raises(AssertionError):
        check_resets(nets.critic, params["critic"], np.random.default_rng(3))


# ------------------------------------------------------ a collected batch and its re-run


def collected(config: Config, time_limit: int | None):
    """A recurrent PPO run's second collected batch (its carry no longer zero)."""
    trainer = make_trainer(config)
    hparams = jaxpo.default_hparams(config)
    if time_limit is not None:
        env_params = envs.with_time_limit(hparams.env_params, time_limit)
        hparams = hparams.replace(env_params=env_params)
    state = trainer.init(jax.random.key(0), hparams)
    nets = make_networks(config, make_env(config))
    collect = make_sample_collect(config, make_env(config), nets)
    first = collect(
        state.params,
        state.env_state,
        state.obs,
        state.carry,
        (0.0, 0.0),
        jax.random.key(1),
        hparams,
    )
    second = collect(
        state.params,
        first.env_state,
        first.obs,
        first.carry,
        (0.0, 0.0),
        jax.random.key(2),
        hparams,
    )
    return nets, state.params, first, second


def check_rerun(config: Config, time_limit: int | None) -> None:
    nets, params, first, second = collected(config, time_limit)
    batch = second.batch
    assert isinstance(batch.obs, Sequences) and batch.action.shape == (
        config.num_envs,
        config.num_steps,
    )
    assert batch.rollout.done.any() and not batch.rollout.done.all()
    assert np.abs(np.asarray(jax.tree.leaves(first.carry)[0])).max() > 0
    log_prob = distribution(nets.actor.apply(params["actor"], batch.obs)).log_prob(batch.action)
    np.testing.assert_allclose(log_prob, batch.log_prob, atol=2e-5)
    np.testing.assert_allclose(
        nets.critic.apply(params["critic"], batch.obs), batch.values, atol=2e-5
    )


#: CartPole cut at 7 steps (truncations), and probe:memory's 4-step episodes (terminations);
#: rollouts of 10 steps, so the states carried from the first rollout into the second are
#: mid-episode (not zero)
RERUNS = [("gymnax:CartPole-v1", 7), ("probe:memory", None)]


@pytest.mark.parametrize(("env_id", "limit"), RERUNS)
def test_a_collected_batch_rerun_over_its_sequences_reproduces_the_rollout(env_id, limit):
    config = GRU_CONFIG.replace(env_id=env_id, num_envs=4, num_steps=10, num_minibatches=2)
    check_rerun(config, limit)
    check_rerun(config.replace(cell="lstm"), limit)


def test_the_rerun_check_fails_without_the_rollouts_reset(monkeypatch):
    import jaxpo.rollout

    monkeypatch.setattr(jaxpo.rollout, "reset_carry", lambda carry, done: carry)
    config = GRU_CONFIG.replace(env_id="probe:memory", num_envs=4, num_steps=10, num_minibatches=2)
    with pytest.raises(AssertionError):
        check_rerun(config, None)


# ------------------------------------------------------------- Fisher-vector products


@pytest.mark.parametrize("subsample", [1, 2])
def test_fisher_vector_products_through_a_gru_equal_the_dense_fisher_float64(subsample):
    config = GRU_CONFIG.replace(algo="trpo", fisher_subsample=subsample, num_minibatches=1)
    rng = np.random.default_rng(4)
    nets, params = networks_and_params(config, seed=5)
    with jax.enable_x64(True):
        actor = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params["actor"])
        obs, start, carry = random_inputs(rng, np.float64)
        seq = Sequences(
            jnp.asarray(obs), jnp.asarray(start), {"actor": jnp.asarray(carry["actor"])}
        )
        apply = fisher_outputs(config, nets.actor, seq)
        flat, unravel = ravel_pytree(actor)

        def logits_of(theta):
            return apply(unravel(theta))[0]

        logits = np.asarray(logits_of(flat))
        n = B * len(range(0, T, subsample))
        assert logits.shape == (n, 2)
        jac = np.asarray(jax.jacfwd(logits_of)(flat))  # [N, A, P]
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        dense = np.zeros((flat.size, flat.size))
        for i in range(n):
            m = np.diag(p[i]) - np.outer(p[i], p[i])
            dense += jac[i].T @ m @ jac[i]
        dense /= n
        fvp = make_fisher_vector_product(apply, actor, 0.0)
        for _ in range(3):
            v = rng.normal(size=flat.size)
            got, _ = ravel_pytree(fvp(unravel(jnp.asarray(v))))
            np.testing.assert_allclose(got, dense @ v, rtol=1e-9, atol=1e-12)
