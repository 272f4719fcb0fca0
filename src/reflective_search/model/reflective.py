"""ReflectiveModel: a Hugging Face causal LM (the policy) plus an SPRM head on its backbone.

One forward pass gives next-token logits and, through hooks on the decoder layers the
head reads (one by default, as MetaStone-S1; several are concatenated), the hidden states
the head scores. Only those layers' inputs are captured; ``output_hidden_states`` (every
layer) is never requested.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from reflective_search.errors import ModelError, ProblemError
from reflective_search.model.cpu_kernels import use_small_batch_linear
from reflective_search.model.head import build_head, head_shape
from reflective_search.model.steps import BlockSteps, StepBoundary

DEFAULT_DELIMITERS = (".\n\n",)
PLAIN_TEMPLATE = "{problem}\n\n"


@dataclass(frozen=True, slots=True)
class ModelSettings:
    delimiters: tuple[str, ...] = DEFAULT_DELIMITERS  # strings that end a reasoning step
    # decoder layers whose *inputs* the head reads, concatenated in this order; -1: the last
    # (hidden_states[-2], MetaStone-S1's choice; `train sprm --feature-layers` picks others).
    feature_layers: tuple[int, ...] = (-1,)
    head_width: int | None = None  # hidden units of the head; None: 2 x backbone hidden size
    prompt_template: str = PLAIN_TEMPLATE  # the whole prompt when the tokenizer has no chat template
    use_chat_template: bool = True  # format prompts with the tokenizer's chat template if it has one
    message_template: str = "{problem}"  # the user message inside the chat template (the task's prompt)
    # Dotted SearchConfig overrides for the task the model was trained on (e.g. Countdown's step
    # limits); a search's own config overrides them in turn.
    search_defaults: tuple[tuple[str, object], ...] = ()
    head_trained: bool = True  # False for a fresh head: its scores mean nothing, and searches say so
    # The scoring rule (model.steps): training and inference read the same positions.
    score_final_step: bool = True  # score a trailing step with no delimiter (MetaStone-S1 releases: off)
    think_span: bool = False  # score only inside one <think>...</think> span (MetaStone-S1 releases: on)


def feature_width(hidden_size: int, settings: ModelSettings) -> int:
    """Width of a step feature: the hidden size times the number of layers the head reads."""
    return hidden_size * len(settings.feature_layers)


def _feature_tap(layer: nn.Module) -> threading.local:
    """Per-thread sinks for ``layer``'s input, filled by one forward pre-hook on the layer.

    The hook lives as long as the backbone and is shared by every ReflectiveModel wrapping
    it (training re-wraps the backbone with a new head): wrapping again must not stack
    hooks. Each thread's forward collects into its own sink, so concurrent forwards (two
    solves in two threads) never see each other's states.
    """
    tap = layer.__dict__.get("_reflective_feature_tap")
    if tap is None:
        tap = threading.local()

        def record(module, args, kwargs) -> None:
            sink = getattr(tap, "current", None)
            if sink is not None:
                sink.append(args[0] if args else kwargs["hidden_states"])

        layer.register_forward_pre_hook(record, with_kwargs=True)
        layer.__dict__["_reflective_feature_tap"] = tap
    return tap


class ReflectiveModel(nn.Module):
    """The policy and its SPRM head, sharing one backbone."""

    def __init__(self, backbone: nn.Module, tokenizer, head: nn.Module, settings: ModelSettings,
                 feature_norm: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        use_small_batch_linear(backbone)  # a search's 1-4-row decode steps run faster on CPU (model.cpu_kernels)
        self.head = head
        # Optional standardisation the head was trained behind: (mean [H], std [H]) of the features.
        self.feature_norm = feature_norm
        self.tokenizer = tokenizer
        self.settings = settings
        self.source = str(getattr(backbone.config, "_name_or_path", "") or type(backbone).__name__)  # for messages
        self.base_name: str | None = None  # the named base model the backbone came from (see model.bases)
        # A folder holding the LoRA adapter that, merged into the base, gives exactly this
        # backbone: saving copies it instead of the full weights (None: save them in full).
        self.adapter_source = None
        self.boundary = StepBoundary(tokenizer, settings.delimiters, score_final_step=settings.score_final_step,
                                     think_span=settings.think_span)
        self._sinks = [_feature_tap(layer) for layer in self._feature_layer_modules()]
        self._check_head_width()
        self.eval()

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_backbone(cls, backbone: nn.Module, tokenizer, settings: ModelSettings | None = None,
                      seed: int = 0, head: nn.Module | dict | None = None,
                      feature_norm: tuple[torch.Tensor, torch.Tensor] | None = None) -> "ReflectiveModel":
        """Attach an SPRM head to any HF causal LM: a trained one (a module or a state dict
        with MetaStone-S1's keys, optionally behind a feature standardisation), or, when
        ``head`` is None, a freshly initialised one (seeded, and marked untrained)."""
        settings = settings or ModelSettings()
        if head is None:
            hidden = backbone.config.hidden_size
            width = settings.head_width or 2 * hidden
            settings = dataclasses.replace(settings, head_width=width, head_trained=False)  # saved configs state it
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                head = build_head(feature_width(hidden, settings), width)
        elif isinstance(head, dict):
            head = _head_from_state(head)
        settings = dataclasses.replace(settings, head_width=head_shape(head.state_dict())[1])
        head.to(device=backbone.device, dtype=next(backbone.parameters()).dtype)
        return cls(backbone, tokenizer, head, settings, feature_norm)

    @classmethod
    def from_pretrained(cls, directory, **load_options) -> "ReflectiveModel":
        """Load a saved ReflectiveModel, a MetaStone-S1 release, or a shipped model by name."""
        from reflective_search.model.checkpoint import load_model

        return load_model(directory, **load_options)

    def with_head(self, head: nn.Module, settings: ModelSettings,
                  feature_norm: tuple[torch.Tensor, torch.Tensor] | None = None) -> "ReflectiveModel":
        """A new wrapper around the same backbone with another head (and settings)."""
        return self._rewrap(self.backbone, head, settings, feature_norm)

    def reading(self, settings: ModelSettings) -> "ReflectiveModel":
        """A wrapper reading the features ``settings`` name (layers, step rule), wearing a
        placeholder head of the right width: for feature passes before the head exists.
        Building it leaves torch's global generator untouched."""
        with torch.random.fork_rng(devices=[]):
            head = build_head(feature_width(self.hidden_size, settings), settings.head_width)
        return self._rewrap(self.backbone, head, settings, None)

    def with_backbone(self, backbone: nn.Module) -> "ReflectiveModel":
        """A new wrapper around another backbone (e.g. the same one with LoRA) with this head."""
        return self._rewrap(backbone, self.head, self.settings, self.feature_norm)

    def _rewrap(self, backbone, head, settings, feature_norm) -> "ReflectiveModel":
        model = ReflectiveModel(backbone, self.tokenizer, head, settings, feature_norm)
        model.source, model.base_name, model.adapter_source = self.source, self.base_name, self.adapter_source
        return model

    def save_pretrained(self, directory, adapter_dtype: torch.dtype | None = None) -> None:
        """Backbone and tokenizer in HF layout; head in safetensors beside a JSON config. A LoRA
        adapter is stored in ``adapter_dtype`` when given (bf16 halves its size)."""
        from reflective_search.model.checkpoint import save_model

        save_model(self, directory, adapter_dtype)

    def _feature_layer_modules(self) -> list[nn.Module]:
        """The decoder layers named by ``settings.feature_layers``, checked (in range, each once)."""
        layers, named = self.decoder_layers(), self.settings.feature_layers
        if not named or any(not -len(layers) <= i < len(layers) for i in named):
            raise ModelError(f"feature layers {list(named)}: the backbone has {len(layers)} decoder layers; "
                             f"name one or more of 0..{len(layers) - 1} (or -1 for the last)")
        if len({i % len(layers) for i in named}) != len(named):
            raise ModelError(f"feature layers {list(named)} name a layer twice: list each decoder layer once")
        return [layers[i] for i in named]

    def _check_head_width(self) -> None:
        hidden, _ = head_shape(self.head.state_dict())
        if hidden != self.feature_size:
            raise ModelError(
                f"the SPRM head reads width {hidden} but this model's features are {self.feature_size} wide "
                f"({len(self.settings.feature_layers)} layer(s) of {self.hidden_size}): the head belongs to "
                "another model or another choice of feature layers"
            )

    # -- facts about the backbone --------------------------------------------------------

    @property
    def hidden_size(self) -> int:
        return int(self.backbone.config.hidden_size)

    @property
    def feature_size(self) -> int:
        """Width of a step feature (``feature_width``)."""
        return feature_width(self.hidden_size, self.settings)

    @property
    def device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    @property
    def max_context(self) -> int:
        return int(getattr(self.backbone.config, "max_position_embeddings", 1 << 30))

    @property
    def eos_token_ids(self) -> frozenset[int]:
        """Tokens that end a trajectory (the generation config's, else the tokenizer's)."""
        generation = getattr(self.backbone, "generation_config", None)
        ids = generation.eos_token_id if generation is not None else None
        ids = ids if ids is not None else self.tokenizer.eos_token_id
        if ids is None:
            return frozenset()
        return frozenset([ids] if isinstance(ids, int) else ids)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def decoder_layers(self) -> nn.ModuleList:
        return self.backbone.get_decoder().layers

    # -- prompts ---------------------------------------------------------------------------

    def format_prompt(self, problem: str) -> str:
        """The exact text the search feeds the model for ``problem``."""
        check_problem(problem)
        if self.uses_chat_template:
            messages = [{"role": "user", "content": self.settings.message_template.format(problem=problem)}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.settings.prompt_template.format(problem=problem)

    @property
    def uses_chat_template(self) -> bool:
        return bool(self.settings.use_chat_template and getattr(self.tokenizer, "chat_template", None))

    def encode_prompt(self, problem: str) -> list[int]:
        """Token ids of ``format_prompt(problem)``, checked against the context length."""
        text = self.format_prompt(problem)
        ids = self.tokenizer(text, add_special_tokens=not self.uses_chat_template)["input_ids"]
        if len(ids) + 1 > self.max_context:
            raise ProblemError(
                f"the problem is {len(ids)} tokens once formatted, but the model's context is "
                f"{self.max_context} tokens: shorten the problem"
            )
        return list(ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    # -- forward -----------------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, cache=None, logits_to_keep: int | torch.Tensor = 0,
                with_features: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits [B, T', V] and head features [B, T, H] (None if not asked) from one pass.

        ``logits_to_keep`` (HF semantics: 0 = all, an int = the last n, a tensor = those
        positions) avoids materialising [T, vocab] logits for long prefills.
        """
        kwargs = dict(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                      cache=cache, use_cache=cache is not None, logits_to_keep=logits_to_keep)
        if not with_features:
            return self.backbone(**kwargs).logits, None
        with self.capture_features() as captured:
            out = self.backbone(**kwargs)
        features = [layer[0] for layer in captured]
        return out.logits, features[0] if len(features) == 1 else torch.cat(features, dim=-1)

    @contextlib.contextmanager
    def capture_features(self) -> Iterator[list[list[torch.Tensor]]]:
        """Record the inputs of the head's decoder layers during the enclosed forward (this
        thread): one list per layer of ``feature_layers``, in that order."""
        captured: list[list[torch.Tensor]] = [[] for _ in self._sinks]
        for sink, into in zip(self._sinks, captured):
            sink.current = into
        try:
            yield captured
        finally:
            for sink in self._sinks:
                sink.current = None


    def head_logits(self, features: torch.Tensor) -> torch.Tensor:
        """The head's logits [...] for features [..., H], standardised first if the head was trained so."""
        features = features.to(self.head[0].weight.dtype)
        if self.feature_norm is not None:
            mean, std = self.feature_norm
            features = (features - mean.to(features)) / std.to(features)
        return self.head(features).squeeze(-1)

    def score_features(self, features: torch.Tensor) -> torch.Tensor:
        """Step scores in [0, 1] (sigmoid of the head's logit) for features [..., H]."""
        logits = self.head_logits(features).float()
        if torch.isnan(logits).any():
            raise ModelError("the SPRM head produced NaN scores: its weights or the backbone's activations are broken")
        return torch.sigmoid(logits)

    @torch.no_grad()
    def score_steps(self, prompt: str, response: str, step=None) -> list[float]:
        """One score per step of ``response`` after ``format_prompt(prompt)``, in one pass.

        ``step``: a ``config.StepConfig``, as the search cut them (None: the model's own
        rule, ``search_step``).
        """
        prompt_ids = self.encode_prompt(prompt)
        response_ids = self.tokenizer(response, add_special_tokens=False)["input_ids"]
        positions = self.step_feature_positions(len(prompt_ids), response_ids, step)
        if not positions:
            return []
        ids = torch.tensor([prompt_ids + list(response_ids)], device=self.device)
        _, features = self(ids, position_ids=torch.arange(ids.shape[1], device=self.device)[None])
        return self.score_features(features[0, torch.tensor(positions, device=self.device)]).tolist()

    def step_feature_positions(self, prompt_length: int, response_ids: Sequence[int], step=None) -> list[int]:
        """Absolute positions whose states score each step of a response after a prompt.

        The state that emits response token j sits at ``prompt_length + j - 1``; the
        token ending each step comes from the step rule's ``response_step_tokens``
        (``step_rule``). Training and inference both read features here, so they cannot
        drift apart.
        """
        return [prompt_length + j - 1 for j in self.step_rule(step).response_step_tokens(response_ids)]

    def step_rule(self, step=None) -> "StepBoundary | BlockSteps":
        """Where steps end and are scored: the delimiter boundary, or blocks of
        ``step.size`` tokens (``step``: a ``config.StepConfig``; None: ``search_step``)."""
        step = self.search_step if step is None else step
        if step.size is None:
            return self.boundary
        return BlockSteps(step.size, score_final_step=self.settings.score_final_step)

    @property
    def search_step(self):
        """The ``config.StepConfig`` this model's searches cut steps with unless told
        otherwise: its search defaults' ``sampling.step`` (delimiters if they set none).
        Head training reads its features by the same rule."""
        from reflective_search.config import load_search_config

        return load_search_config(None, dict(self.settings.search_defaults)).sampling.step


def _head_from_state(state: dict) -> nn.Module:
    """A head module holding a state dict with MetaStone-S1's keys."""
    missing = [key for key in ("0.weight", "0.bias", "3.weight", "3.bias") if key not in state]
    if missing:
        raise ModelError(f"the head's state dict lacks {missing}: expected MetaStone-S1's keys 0.*, 3.*")
    hidden, width = head_shape(state)
    head = build_head(hidden, width)
    head.load_state_dict({key: state[key] for key in ("0.weight", "0.bias", "3.weight", "3.bias")})
    return head


def check_problem(problem: object) -> None:
    if not isinstance(problem, str):
        raise ProblemError(f"a problem must be a string, got {type(problem).__name__}")
    if not problem.strip():
        raise ProblemError("the problem is empty: pass the question's text")
