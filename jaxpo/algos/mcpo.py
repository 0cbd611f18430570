"""MCPO: a second trust region around a virtual policy built from a memory of past policies.

Reference: Le et al., NeurIPS 2022, "Learning to Constrain Policy Optimization with Virtual
Trust Region".

L = −E[r·Â] + c·[β·E_s KL(π_old ‖ π_θ) + (1 − β)·E_s KL(π_ψ ‖ π_θ)] + c_v·L_V − c_e·H,
minimised by epochs × minibatches of Adam. Everything below is algorithm state carried in
``rule_state["algo"]`` (:class:`MCPOState`). The paper's exact choices were not available
here, so these are ours; the numeric ones are traced hparams, the structural ones static
config fields:

- **Memory**: ``config.memory_size`` (N, static) past actor parameter sets stacked on a
  leading axis, with a ``filled`` mask and each slot's age in updates. Slot 0 starts as the
  initial policy.
- **Writing (diversity rule)**: after an update, π_old (the pre-update policy) is written
  when its smallest mean KL(π_old ‖ π_i) to the filled slots on the batch exceeds
  ``write_threshold`` and π_ψ's estimated gain did not beat its own at all this update (no
  margin: a policy the memory may beat is not remembered, so a collapse does not overwrite
  the policies to return to; with the switch's margin, a still-poor π_old whose deficit
  was within noise got written and the virtual policy collapsed onto it). It goes
  into an empty slot or else, per ``config.memory_replace``, the oldest one (``"oldest"``)
  or the one closest to π_old (``"closest"``, the most redundant).
- **Virtual policy**: ψ = Σ_i w_i θ_i, a combination in parameter space, so π_ψ is a policy
  of the same family and both KL terms stay closed-form (a mixture of the slots' outputs
  would not be Gaussian). w = softmax over filled slots of scores from an attention MLP
  (``config.attention_hidden`` tanh units; its output layer starts at zero, so the initial
  weights are uniform and do not depend on a key) whose inputs per slot are its
  importance-sampled surrogate gain mean(π_i/π_old·Â) on the batch, its KL(π_old ‖ π_i) and
  its age as min(age, N) / N.
- **Attention training**: ``config.attention_steps`` Adam steps (``attention_lr``) per update
  on the attention parameters, maximising π_ψ's surrogate mean(π_ψ/π_old·Â) on the batch,
  before the policy update; ψ is then rebuilt with the new weights. The defaults (5 steps
  at 1e-2) let the weights leave uniform within a few updates; at 1 step of 1e-3 they
  stayed within 0.001 of uniform for a whole short run. ``attention_lr = 0`` keeps them
  uniform (the ablation's "uniform attention").
- **Switching**: β = ``beta_low`` (the policy is pulled towards ψ) when π_ψ's estimated gain
  mean(π_ψ/π_old·Â) beats π_old's mean(Â) by more than ``switch_margin`` standard errors of
  the per-sample difference (π_ψ/π_old − 1)·Â, else ``beta_high``. With normalised
  advantages π_old's estimate is exactly 0 and, for a ψ close to π_old, ψ's is noise around
  0: without a margin ψ "won" about half of the updates on brax inverted_pendulum, pulling
  the policy back towards older ones at random. A difference within 1e-6·mean(|Â|) (float
  rounding, e.g. ψ = π_old at the first update) never switches. With the default
  ``beta_high = 1`` the virtual trust region acts only when π_old does worse than the
  memory suggests it could.
- **Metrics** per update: ``beta``, ``beta_low_chosen`` (1 when ψ looked better by the
  margin; its mean over updates is the share on ``beta_low``), ``virtual_ahead`` (1 when ψ
  scored above π_old at all), ``attention_entropy`` (ln of the filled slots
  when uniform), ``kl_virtual_old`` = KL(π_ψ ‖ π_old), ``kl_virtual`` = KL(π_ψ ‖ π_new),
  ``kl``, ``virtual_gain``, ``memory_write``, ``memory_filled``.
  With ``beta_high = beta_low = 1`` MCPO is the PPO-KL form with a fixed β = ``kl_coef``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from ..batches import SampleBatch
from ..config import Config
from ..hparams import hparam
from ..losses.kl import kl_divergence
from ..losses.penalty import mcpo
from ..networks import Networks, distribution
from ..validation import one_of, positive_int
from .actor_critic import (
    ActorCriticConfig,
    ActorCriticHParams,
    PolicyInputs,
    actor_critic_algorithm,
    make_actor_critic_loss,
    normalize,
    record_old_outputs,
)
from .base import LossFn, register
from .first_order import Adaptation

MEMORY_REPLACE = ("oldest", "closest")

#: Slot features fed to the attention network: gain, KL to π_old, min(age, N) / N.
NUM_FEATURES = 3
#: Log-ratios are clamped to ±this before exponentiating in the gain estimates.
MAX_LOG_RATIO = 10.0
#: Gains closer than this times mean(|Â|) are a tie (float rounding, not a real difference).
TIE_TOLERANCE = 1e-6


@dataclasses.dataclass(frozen=True)
class MCPOConfig(ActorCriticConfig):
    """MCPO's static options.

    Attributes:
        memory_size: N, the number of policy-memory slots.
        memory_replace: which full slot is overwritten: ``"oldest"`` or ``"closest"`` (the
            smallest KL(π_old ‖ π_i), i.e. the most redundant).
        attention_hidden: width of the attention MLP.
        attention_steps: Adam steps on the attention network per update.
    """

    memory_size: int = 5
    memory_replace: str = "oldest"
    attention_hidden: int = 16
    attention_steps: int = 5

    def validate(self, config: Config) -> None:
        """Checks the family's fields and the memory's."""
        super().validate(config)
        for name in ("memory_size", "attention_hidden", "attention_steps"):
            positive_int(name, getattr(self, name))
        one_of("memory_replace", self.memory_replace, MEMORY_REPLACE)


@struct.dataclass
class MCPOHParams(ActorCriticHParams):
    """MCPO's traced hyperparameters."""

    kl_coef: jax.Array = hparam(1.0, "c, the scale of both KL terms", ge=0.0)
    beta_high: jax.Array = hparam(1.0, "β when π_old's estimated gain beats π_ψ's", ge=0.0, le=1.0)
    beta_low: jax.Array = hparam(0.5, "β otherwise", ge=0.0, le=1.0)
    write_threshold: jax.Array = hparam(
        0.002, "smallest mean KL(π_old ‖ π_i) to the memory for π_old to be written", ge=0.0
    )
    attention_lr: jax.Array = hparam(
        1e-2, "Adam learning rate of the attention network (0: uniform weights)", ge=0.0
    )
    switch_margin: jax.Array = hparam(
        1.0, "standard errors by which π_ψ's estimated gain must beat π_old's for beta_low", ge=0.0
    )


class AttentionNet(nn.Module):
    """Scores memory slots from their features: ``[N, NUM_FEATURES] -> [N]``.

    The output layer starts at zero, so every slot scores 0 until the first attention step.
    """

    hidden: int = 16

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        """One score per slot."""
        hidden = nn.tanh(nn.Dense(self.hidden)(features))
        return nn.Dense(1, kernel_init=nn.initializers.zeros)(hidden)[..., 0]


class MCPOState(NamedTuple):
    """MCPO's algorithm state.

    Attributes:
        memory: actor parameter sets stacked on a leading axis ``[N, ...]``.
        filled: which slots hold a policy, ``[N]`` bool.
        age: updates since each slot was written, ``[N]`` float32.
        attention: the attention network's parameters.
        attention_opt: its Adam state.
        beta: the switching coefficient of the current update.
        virtual_better: whether π_ψ's estimated gain beat π_old's by ``switch_margin``
            standard errors this update (β = β_low).
        virtual_ahead: whether it beat π_old's at all (margin 0): π_old is then not written.
        slot_kl: mean KL(π_old ‖ π_i) per slot on the current batch, ``[N]``.
        weights: the attention weights of the current update, ``[N]``.
        virtual_gain: π_ψ's estimated gain mean(π_ψ/π_old·Â) on the current batch.

    ``beta`` to ``virtual_gain`` are per-update values: ``prepare``
    sets them, the loss and ``finish`` read them, and the next ``prepare`` overwrites them.
    """

    memory: Any
    filled: jax.Array
    age: jax.Array
    attention: Any
    attention_opt: Any
    beta: jax.Array
    virtual_better: jax.Array
    virtual_ahead: jax.Array
    slot_kl: jax.Array
    weights: jax.Array
    virtual_gain: jax.Array


def attention_weights(scores: jax.Array, filled: jax.Array) -> jax.Array:
    """Softmax of ``scores`` over the filled slots (0 on empty ones), ``[N]``."""
    return jax.nn.softmax(jnp.where(filled, scores, -jnp.inf))


def virtual_params(memory: Any, weights: jax.Array) -> Any:
    """ψ = Σ_i w_i θ_i over the memory's leading axis."""
    return jax.tree.map(lambda m: jnp.tensordot(weights, m, axes=1), memory)


def surrogate_gain(log_prob: jax.Array, old_log_prob: jax.Array, adv: jax.Array) -> jax.Array:
    """mean(π/π_old·Â), the importance-sampled gain estimate (log-ratio clamped)."""
    log_ratio = jnp.clip(log_prob - old_log_prob, -MAX_LOG_RATIO, MAX_LOG_RATIO)
    return jnp.mean(jnp.exp(log_ratio) * adv)


def beats(
    log_prob: jax.Array, old_log_prob: jax.Array, adv: jax.Array, margin: jax.Array
) -> jax.Array:
    """Whether π's estimated gain beats π_old's by more than ``margin`` standard errors.

    The per-sample difference is d = (π/π_old − 1)·Â; π wins when mean(d) > margin·std(d)/√n
    and mean(d) > 1e-6·mean(|Â|): a tie within float rounding (π = π_old exactly) is
    π_old's, so the choice does not depend on how XLA vectorised the two means.
    """
    log_ratio = jnp.clip(log_prob - old_log_prob, -MAX_LOG_RATIO, MAX_LOG_RATIO)
    diff = (jnp.exp(log_ratio) - 1.0) * adv
    stderr = jnp.std(diff) / jnp.sqrt(diff.size)
    floor = TIE_TOLERANCE * jnp.mean(jnp.abs(adv))
    return jnp.mean(diff) > jnp.maximum(margin * stderr, floor)


def write_slot(
    memory: Any,
    filled: jax.Array,
    age: jax.Array,
    params: Any,
    write: jax.Array,
    distance: jax.Array | None = None,
) -> tuple[Any, jax.Array, jax.Array]:
    """Writes ``params`` into a slot when ``write``; ages the other filled slots by one.

    The slot is an empty one if any, else the oldest, or, given ``distance`` ``[N]`` (e.g.
    each slot's KL from ``params``), the closest filled slot.
    """
    rank = age if distance is None else -distance
    slot = jnp.argmax(jnp.where(filled, rank, jnp.inf))
    hit = write & (jnp.arange(filled.shape[0]) == slot)
    memory = jax.tree.map(
        lambda m, p: jnp.where(hit.reshape((-1,) + (1,) * p.ndim), p[None], m), memory, params
    )
    return memory, filled | hit, jnp.where(hit, 0.0, age + filled.astype(age.dtype))


def should_write(slot_kl: jax.Array, filled: jax.Array, threshold: jax.Array) -> jax.Array:
    """The diversity rule: min over filled slots of KL(π_old ‖ π_i) > ``threshold``."""
    return jnp.min(jnp.where(filled, slot_kl, jnp.inf)) > threshold


def make_mcpo_loss(config: Config, hparams: MCPOHParams, networks: Networks) -> LossFn:
    """−E[r·Â] + c·[β·KL(π_old ‖ π_θ) + (1 − β)·KL(π_ψ ‖ π_θ)] + c_v·value_loss − c_e·H.

    β and π_ψ's outputs come from the algorithm state and the prepared batch.
    """

    def policy_term(inputs: PolicyInputs, state: MCPOState) -> tuple[jax.Array, dict]:
        mb = inputs.batch
        kl_old = kl_divergence(mb.old_outputs, inputs.outputs)
        kl_virtual = kl_divergence(mb.extras["virtual"], inputs.outputs)
        loss = mcpo(
            inputs.log_prob,
            mb.log_prob,
            inputs.advantages,
            kl_old,
            kl_virtual,
            state.beta,
            hparams.kl_coef,
        )
        return loss, {}

    return make_actor_critic_loss(config, hparams, networks, policy_term)


def make_mcpo_adaptation(config: Config, hparams: MCPOHParams, networks: Networks) -> Adaptation:
    """The memory, attention and switching state (:class:`MCPOState`) and its updates."""
    actor = networks.actor
    attention = AttentionNet(hidden=config.attention_hidden)
    attention_tx = optax.adam(hparams.attention_lr)
    n = config.memory_size

    def init(params: Any) -> MCPOState:
        memory = jax.tree.map(lambda p: jnp.broadcast_to(p, (n,) + p.shape), params["actor"])
        attention_params = attention.init(jax.random.key(0), jnp.zeros((n, NUM_FEATURES)))
        zeros = jnp.zeros((n,), jnp.float32)
        return MCPOState(
            memory=memory,
            filled=jnp.arange(n) == 0,
            age=zeros,
            attention=attention_params,
            attention_opt=attention_tx.init(attention_params),
            beta=jnp.asarray(hparams.beta_high, jnp.float32),
            virtual_better=jnp.bool_(False),
            virtual_ahead=jnp.bool_(False),
            slot_kl=zeros,
            weights=zeros,
            virtual_gain=jnp.zeros((), jnp.float32),
        )

    def prepare(params: Any, state: MCPOState, batch: SampleBatch) -> tuple[MCPOState, SampleBatch]:
        state, batch = record_old_outputs(networks)(params, state, batch)
        adv = normalize(batch.advantages) if config.normalize_advantages else batch.advantages

        def log_prob_of(actor_params: Any) -> tuple[jax.Array, Any]:
            outputs = actor.apply(actor_params, batch.obs)
            return distribution(outputs).log_prob(batch.action), outputs

        def slot_stats(slot_params: Any) -> tuple[jax.Array, jax.Array]:
            log_prob, outputs = log_prob_of(slot_params)
            gain = surrogate_gain(log_prob, batch.log_prob, adv)
            return gain, kl_divergence(batch.old_outputs, outputs).mean()

        gains, slot_kl = jax.vmap(slot_stats)(state.memory)
        age = jnp.minimum(state.age, n) / n
        features = jax.lax.stop_gradient(jnp.stack([gains, slot_kl, age], axis=-1))

        def weights_of(attention_params: Any) -> jax.Array:
            return attention_weights(attention.apply(attention_params, features), state.filled)

        def virtual_loss(attention_params: Any) -> jax.Array:
            psi = virtual_params(state.memory, weights_of(attention_params))
            return -surrogate_gain(log_prob_of(psi)[0], batch.log_prob, adv)

        def attention_step(_: int, carry: tuple[Any, Any]) -> tuple[Any, Any]:
            attention_params, attention_opt = carry
            grads = jax.grad(virtual_loss)(attention_params)
            updates, attention_opt = attention_tx.update(grads, attention_opt)
            return optax.apply_updates(attention_params, updates), attention_opt

        attention_params, attention_opt = jax.lax.fori_loop(
            0, config.attention_steps, attention_step, (state.attention, state.attention_opt)
        )
        weights = weights_of(attention_params)
        virtual_log_prob, virtual = log_prob_of(virtual_params(state.memory, weights))
        virtual_gain = surrogate_gain(virtual_log_prob, batch.log_prob, adv)
        virtual_better = beats(virtual_log_prob, batch.log_prob, adv, hparams.switch_margin)
        virtual_ahead = beats(virtual_log_prob, batch.log_prob, adv, jnp.float32(0.0))
        beta = jnp.where(virtual_better, hparams.beta_low, hparams.beta_high)
        state = state._replace(
            attention=attention_params,
            attention_opt=attention_opt,
            beta=beta,
            virtual_better=virtual_better,
            virtual_ahead=virtual_ahead,
            slot_kl=slot_kl,
            weights=weights,
            virtual_gain=virtual_gain,
        )
        extras = {"virtual": jax.lax.stop_gradient(virtual)}
        return state, batch._replace(extras=extras)

    def finish(state: MCPOState, old: Any, new: Any, batch: SampleBatch) -> tuple[MCPOState, dict]:
        outputs = actor.apply(new["actor"], batch.obs)
        # A π_old that lost to ψ is not remembered: the memory keeps the policies that held.
        write = should_write(state.slot_kl, state.filled, hparams.write_threshold)
        write = write & ~state.virtual_ahead
        distance = state.slot_kl if config.memory_replace == "closest" else None
        memory, filled, age = write_slot(
            state.memory, state.filled, state.age, old["actor"], write, distance
        )
        w = state.weights
        virtual = batch.extras["virtual"]
        metrics = {
            "beta": state.beta,
            "beta_low_chosen": state.virtual_better.astype(jnp.float32),
            "virtual_ahead": state.virtual_ahead.astype(jnp.float32),
            "kl": kl_divergence(batch.old_outputs, outputs).mean(),
            "kl_virtual": kl_divergence(virtual, outputs).mean(),
            "kl_virtual_old": kl_divergence(virtual, batch.old_outputs).mean(),
            "attention_entropy": -jnp.sum(jnp.where(w > 0, w * jnp.log(w), 0.0)),
            "virtual_gain": state.virtual_gain,
            "memory_write": write.astype(jnp.float32),
            "memory_filled": filled.sum().astype(jnp.float32),
        }
        return state._replace(memory=memory, filled=filled, age=age), metrics

    return Adaptation(init=init, prepare=prepare, finish=finish)


MCPO = register(
    actor_critic_algorithm(
        "mcpo", MCPOHParams, make_mcpo_loss, make_mcpo_adaptation, config_cls=MCPOConfig
    )
)

__all__ = [
    "MCPO",
    "MCPOConfig",
    "MCPOHParams",
    "MCPOState",
    "attention_weights",
    "beats",
    "make_mcpo_adaptation",
    "make_mcpo_loss",
    "should_write",
    "virtual_params",
    "write_slot",
]
