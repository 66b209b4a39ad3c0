"""Behaviour of blocks.catalog: tiers, aliases and the cost of a run's tokens."""

from __future__ import annotations

import pytest

from blocks.catalog import (
    DEFAULT_TIERS,
    ModelRate,
    TokenUsage,
    UnknownModelError,
    WorkjetModelCatalog,
)

MILLION = 1_000_000


@pytest.fixture
def catalog() -> WorkjetModelCatalog:
    return WorkjetModelCatalog()


class TestEstimateCost:
    def test_opus_4_5_prices_every_kind_of_token_at_its_own_rate(
        self, catalog: WorkjetModelCatalog
    ) -> None:
        usage = TokenUsage(
            input=MILLION, output=MILLION, cache_write=MILLION, cache_read=10 * MILLION
        )

        assert catalog.estimate_cost("claude-opus-4-5", usage) == 41.25

    @pytest.mark.parametrize(
        ("usage", "dollars"),
        [
            (TokenUsage(input=MILLION), 3.0),
            (TokenUsage(output=MILLION), 15.0),
            (TokenUsage(cache_write=MILLION), 3.75),
            (TokenUsage(cache_read=MILLION), 0.3),
        ],
        ids=["input", "output", "cache_write", "cache_read"],
    )
    def test_sonnet_4_5_rate_of_each_token_kind(
        self, catalog: WorkjetModelCatalog, usage: TokenUsage, dollars: float
    ) -> None:
        assert catalog.estimate_cost("claude-sonnet-4-5", usage) == dollars

    def test_small_usage_is_priced_to_the_micro_dollar(
        self, catalog: WorkjetModelCatalog
    ) -> None:
        usage = TokenUsage(input=1234, output=567, cache_write=89, cache_read=10)

        # haiku 4.5: $1 in, $5 out, $1.25 cache write, $0.10 cache read per million
        expected = (1234 * 1.0 + 567 * 5.0 + 89 * 1.25 + 10 * 0.1) / MILLION
        assert catalog.estimate_cost("claude-haiku-4-5", usage) == round(expected, 6)
        assert catalog.estimate_cost("claude-haiku-4-5", usage) == 0.004181

    def test_no_tokens_cost_nothing(self, catalog: WorkjetModelCatalog) -> None:
        assert catalog.estimate_cost("claude-opus-4-1", TokenUsage()) == 0.0

    def test_alias_is_priced_as_the_model_it_names(
        self, catalog: WorkjetModelCatalog
    ) -> None:
        usage = TokenUsage(input=MILLION, output=MILLION)

        assert catalog.estimate_cost("claude-4.5-opus", usage) == 30.0
        assert catalog.estimate_cost("claude-4-opus", usage) == 90.0

    def test_unpriced_model_costs_nothing(self, catalog: WorkjetModelCatalog) -> None:
        usage = TokenUsage(input=MILLION, output=MILLION)

        assert catalog.estimate_cost("claude-future-9", usage) == 0.0

    def test_operator_rates_replace_the_defaults(self) -> None:
        catalog = WorkjetModelCatalog(
            rates={
                "house-model": ModelRate(input=2, output=4, cache_write=0, cache_read=0)
            }
        )

        usage = TokenUsage(input=MILLION // 2, output=MILLION // 4)
        assert catalog.estimate_cost("house-model", usage) == 2.0
        assert catalog.estimate_cost("claude-opus-4-5", usage) == 0.0


class TestDefaultRates:
    def test_cache_rates_follow_the_input_rate(
        self, catalog: WorkjetModelCatalog
    ) -> None:
        for model_id, rate in catalog.rates.items():
            assert rate.cache_write == pytest.approx(rate.input * 1.25), model_id
            assert rate.cache_read == pytest.approx(rate.input * 0.1), model_id

    def test_every_tier_model_has_a_price(self, catalog: WorkjetModelCatalog) -> None:
        for tier, models in catalog.tiers.items():
            for model_id in models:
                assert catalog.rate_for(model_id) is not None, (tier, model_id)

    def test_each_catalog_gets_its_own_copy_of_the_defaults(self) -> None:
        first = WorkjetModelCatalog()
        first.tiers["standard"].append("claude-opus-4-0")
        first.rates["claude-opus-4-5"].input = 99.0

        second = WorkjetModelCatalog()
        assert second.tiers["standard"] == DEFAULT_TIERS["standard"]
        assert second.rates["claude-opus-4-5"].input == 5.0


class TestCandidates:
    @pytest.mark.parametrize(
        ("tier", "models"),
        [
            ("standard", ["claude-sonnet-4-5", "claude-haiku-4-5"]),
            ("premium", ["claude-opus-4-5", "claude-sonnet-4-5"]),
            (
                "enterprise",
                ["claude-opus-4-5", "claude-opus-4-1", "claude-sonnet-4-5"],
            ),
        ],
    )
    def test_tier_resolves_to_its_models_in_fallback_order(
        self, catalog: WorkjetModelCatalog, tier: str, models: list[str]
    ) -> None:
        assert catalog.candidates(tier) == models

    def test_returned_list_is_a_copy(self, catalog: WorkjetModelCatalog) -> None:
        catalog.candidates("premium").clear()

        assert catalog.candidates("premium") == ["claude-opus-4-5", "claude-sonnet-4-5"]

    @pytest.mark.parametrize(
        ("alias", "model_id"),
        [
            ("claude-4-sonnet", "claude-sonnet-4-0"),
            ("claude-4-opus", "claude-opus-4-0"),
            ("claude-4.5-sonnet", "claude-sonnet-4-5"),
            ("claude-4.5-opus", "claude-opus-4-5"),
            ("claude-4.5-haiku", "claude-haiku-4-5"),
        ],
    )
    def test_alias_resolves_to_one_model_id(
        self, catalog: WorkjetModelCatalog, alias: str, model_id: str
    ) -> None:
        assert catalog.candidates(alias) == [model_id]

    def test_model_id_resolves_to_itself(self, catalog: WorkjetModelCatalog) -> None:
        assert catalog.candidates("claude-3-5-haiku-latest") == [
            "claude-3-5-haiku-latest"
        ]

    @pytest.mark.parametrize("name", ["gpt-4o", "Standard", "", "claude-opus"])
    def test_unknown_name_raises(self, catalog: WorkjetModelCatalog, name: str) -> None:
        with pytest.raises(UnknownModelError) as raised:
            catalog.candidates(name)

        assert str(raised.value) == name
        assert isinstance(raised.value, ValueError)

    def test_known_names_cover_tiers_aliases_and_models_once(
        self, catalog: WorkjetModelCatalog
    ) -> None:
        names = catalog.known_names()

        assert names == sorted(set(names))
        assert {"standard", "claude-4.5-opus", "claude-opus-4-5"} <= set(names)
        for name in names:
            assert catalog.candidates(name)


class TestTokenUsage:
    def test_addition_sums_every_field(self) -> None:
        first = TokenUsage(input=1, output=2, cache_write=3, cache_read=4)
        second = TokenUsage(input=10, output=20, cache_write=30, cache_read=40)

        total = first + second

        assert total == TokenUsage(input=11, output=22, cache_write=33, cache_read=44)
        assert first == TokenUsage(input=1, output=2, cache_write=3, cache_read=4)

    def test_sum_of_many_calls_starts_from_empty_usage(self) -> None:
        turns = [TokenUsage(input=100, output=5, cache_read=900) for _ in range(3)]

        total = sum(turns, TokenUsage())

        assert total == TokenUsage(input=300, output=15, cache_read=2700)

    def test_billed_input_counts_cache_reads_and_writes(self) -> None:
        usage = TokenUsage(input=100, output=7, cache_write=20, cache_read=3)

        assert usage.billed_input == 123

    def test_empty_usage_is_zero(self) -> None:
        usage = TokenUsage()

        assert (usage.input, usage.output, usage.billed_input) == (0, 0, 0)
