"""The model catalogue: which Anthropic models a tier means, and what each costs.

It lives in Prefect as a block document so that an operator can change a rate or a
tier in the Prefect UI, and every facade instance and every run reads the same
numbers. The defaults are Anthropic's list prices in US dollars per million tokens;
cache writes are the five-minute rate (1.25x input), cache reads 0.1x input.
"""

from __future__ import annotations

from typing import ClassVar

from prefect.blocks.core import Block
from pydantic import BaseModel, Field

CATALOG_DOCUMENT_NAME = "default"


class ModelRate(BaseModel):
    """Prices of one model in US dollars per million tokens."""

    input: float = Field(ge=0, description="Uncached input tokens.")
    output: float = Field(ge=0, description="Output tokens.")
    cache_write: float = Field(ge=0, description="Tokens written to the prompt cache.")
    cache_read: float = Field(ge=0, description="Tokens read from the prompt cache.")


def _rate(input_price: float, output_price: float) -> ModelRate:
    return ModelRate(
        input=input_price,
        output=output_price,
        cache_write=round(input_price * 1.25, 6),
        cache_read=round(input_price * 0.1, 6),
    )


DEFAULT_RATES: dict[str, ModelRate] = {
    "claude-opus-4-5": _rate(5.0, 25.0),
    "claude-opus-4-1": _rate(15.0, 75.0),
    "claude-opus-4-0": _rate(15.0, 75.0),
    "claude-sonnet-4-5": _rate(3.0, 15.0),
    "claude-sonnet-4-0": _rate(3.0, 15.0),
    "claude-haiku-4-5": _rate(1.0, 5.0),
    "claude-3-5-haiku-latest": _rate(0.8, 4.0),
}

DEFAULT_TIERS: dict[str, list[str]] = {
    "standard": ["claude-sonnet-4-5", "claude-haiku-4-5"],
    "premium": ["claude-opus-4-5", "claude-sonnet-4-5"],
    "enterprise": ["claude-opus-4-5", "claude-opus-4-1", "claude-sonnet-4-5"],
}

# Workjet's own documentation names models this way; they resolve to Anthropic ids.
DEFAULT_ALIASES: dict[str, str] = {
    "claude-4-sonnet": "claude-sonnet-4-0",
    "claude-4-opus": "claude-opus-4-0",
    "claude-4.5-sonnet": "claude-sonnet-4-5",
    "claude-4.5-opus": "claude-opus-4-5",
    "claude-4.5-haiku": "claude-haiku-4-5",
}


class UnknownModelError(ValueError):
    """The name is neither a tier, an alias nor a priced model id."""


class WorkjetModelCatalog(Block):
    """Model tiers with their fallback order, aliases, and per-model token rates."""

    _block_type_name: ClassVar[str] = "Workjet Model Catalog"
    _block_type_slug: ClassVar[str] = "workjet-model-catalog"
    _description: ClassVar[str] = (
        "Which Anthropic models each Workjet tier tries, in order, and the price per"
        " million tokens used for estimatedCost."
    )

    tiers: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_TIERS.items()},
        description="Tier name to model ids, tried in order on overload or rate limit.",
    )
    aliases: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_ALIASES),
        description="Other names accepted for a model id.",
    )
    rates: dict[str, ModelRate] = Field(
        default_factory=lambda: {k: v.model_copy() for k, v in DEFAULT_RATES.items()},
        description="Model id to US dollars per million tokens.",
    )

    def candidates(self, model: str) -> list[str]:
        """The model ids to try, in order, for a tier, an alias or a model id."""
        if model in self.tiers:
            return list(self.tiers[model])

        resolved = self.aliases.get(model, model)
        if resolved in self.rates:
            return [resolved]

        raise UnknownModelError(model)

    def known_names(self) -> list[str]:
        return sorted({*self.tiers, *self.aliases, *self.rates})

    def rate_for(self, model_id: str) -> ModelRate | None:
        return self.rates.get(self.aliases.get(model_id, model_id))

    def estimate_cost(self, model_id: str, usage: TokenUsage) -> float:
        """US dollars for the usage at the model's rates; 0.0 for an unpriced model."""
        rate = self.rate_for(model_id)
        if rate is None:
            return 0.0

        dollars = (
            usage.input * rate.input
            + usage.output * rate.output
            + usage.cache_write * rate.cache_write
            + usage.cache_read * rate.cache_read
        ) / 1_000_000
        return round(dollars, 6)


class TokenUsage(BaseModel):
    """Tokens of one or more model calls, split the way Anthropic bills them."""

    input: int = 0
    output: int = 0
    cache_write: int = 0
    cache_read: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input=self.input + other.input,
            output=self.output + other.output,
            cache_write=self.cache_write + other.cache_write,
            cache_read=self.cache_read + other.cache_read,
        )

    @property
    def billed_input(self) -> int:
        """Input as the run history reports it: cache reads and writes included."""
        return self.input + self.cache_write + self.cache_read
