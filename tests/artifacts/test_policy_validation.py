"""Every way a policy file can be refused, through the check an activation runs (schema, model,
calibration, golden-batch dry run): each error names the file, the path inside it and the fix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from app.control.loader import BundleCache
from app.control.warmup import GoldenBatch
from app.errors import PolicyError
from app.protocol.rows import decode_score_request
from tests.conftest import write_policy

GOLDEN = GoldenBatch(lambda body: decode_score_request(body, max_candidates=1_000_000)[1])


def _refusal(store_copy: tuple[Path, Path], edit: Any) -> PolicyError:
    store, policies = store_copy
    path = write_policy(policies, "9", edit)
    with pytest.raises(PolicyError) as info:
        GOLDEN.validate(path, BundleCache(store, 1))
    error = info.value
    assert error.path == str(path) and "9.yaml" in error.message  # the file
    assert error.fix and f"(fix: {error.fix})" in error.message  # the fix
    return error


def _guard(policy: dict[str, Any], index: int, **changes: Any) -> None:
    policy["guardrails"][index].update(changes)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        # unknown task, in a term and in a guardrail
        (lambda p: p["utility"][0].update(task="dwell"), "utility[0].task"),
        (lambda p: _guard(p, 0, task="dwell"), "guardrails[0].task"),
        # non-finite weights (YAML .nan / .inf), in a term and in an override
        (lambda p: p["utility"][1].update(weight=math.nan), "utility[1].weight"),
        (lambda p: p["utility"][0].update(weight=math.inf), "utility[0].weight"),
        (lambda p: p["overrides"][0]["weights"].update(hide_penalty=-math.inf), "overrides[0].weights.hide_penalty"),
        # thresholds outside [0, 1], in a guardrail and in an override
        (lambda p: _guard(p, 0, above=1.5), "guardrails[0].above"),
        (lambda p: _guard(p, 0, below=-0.1), "guardrails[0].below"),
        (lambda p: p["overrides"][0]["thresholds"].update(report_risk=2.0), "overrides[0].thresholds.report_risk"),
        # finite but out of the documented bounds (app/artifacts/bounds.py): the red-team's 1e308 weight,
        # an override weight, slate sizes, and numbers compared with attributes
        (lambda p: p["utility"][1].update(weight=1e308), "utility[1].weight"),
        (lambda p: p["utility"][0].update(weight=-1.5e6), "utility[0].weight"),
        (lambda p: p["overrides"][0]["weights"].update(hide_penalty=-1e7), "overrides[0].weights.hide_penalty"),
        (lambda p: p["slate"].update(top_k=10**6), "slate.top_k"),
        (lambda p: p["slate"]["max_per_value"][0].update(max=10**12), "slate.max_per_value[0].max"),
        (lambda p: p["slate"]["max_matching"][0].update(equals=math.inf), "slate.max_matching[0].equals"),
        (lambda p: _guard(p, 1, equals=10**400), "guardrails[1].equals"),
        (lambda p: _guard(p, 1, equals=None, **{"in": [1.0, math.nan]}), "guardrails[1].in[1]"),
        (lambda p: p["overrides"][0]["when"].update(user_segment=-1e301), "overrides[0].when.user_segment"),
        # the dry run at the extremes: 200 value terms at the largest weight can sum past the largest float
        (lambda p: p["utility"].extend(
            {"name": f"margin_{i}", "task": "purchase", "weight": 1e6, "attribute": "margin"} for i in range(200)
        ), "utility"),
        # unknown (undeclared) attributes: value term, guardrail, slate rules
        (lambda p: p["utility"][1].update(attribute="price_tag"), "utility[1].attribute"),
        (lambda p: _guard(p, 1, attribute="is_safe"), "guardrails[1].attribute"),
        (lambda p: p["slate"]["max_per_value"][0].update(attribute="brand"), "slate.max_per_value[0].attribute"),
        (lambda p: p["slate"]["max_matching"][0].update(attribute="paid"), "slate.max_matching[0].attribute"),
        # a negative task (hide, report) with a positive weight, directly or by override
        (lambda p: p["utility"][2].update(weight=2.0), "utility[2].weight"),
        (lambda p: p["overrides"][0]["weights"].update(hide_penalty=0.5), "overrides[0].weights.hide_penalty"),
        # references and governance
        (lambda p: p["overrides"][0]["weights"].update(nope=1.0), "overrides[0].weights.nope"),
        (lambda p: p["model"].update(version="2"), "model"),
        (lambda p: p.update(calibration_version="7"), "calibration_version"),
        (lambda p: p["governance"].update(approved_by=[]), "governance.approved_by"),
        (lambda p: p["governance"].pop("owner"), "governance.owner"),
        (lambda p: p.update(version="8"), "surface/version"),
        (lambda p: p.update(utility=[]), "utility"),
        (lambda p: p["utility"][0].update(wieght=1.0), "utility[0].wieght"),
    ],
)
def test_each_validation_failure_names_file_field_and_fix(
    store_copy: tuple[Path, Path], edit: Any, field: str
) -> None:
    error = _refusal(store_copy, edit)
    assert error.field == field
    assert field in error.message


@pytest.mark.parametrize(
    ("edit", "field", "words"),
    [
        # schema-valid, but the golden batch sends creator_id as a string
        (lambda p: p["attributes"].update(creator_id="number"), "attributes.creator_id", "creator_id"),
        # schema-valid, but every golden candidate is filtered
        (lambda p: _guard(p, 0, above=0.0), "guardrails", "report_risk"),
        # only the override context filters everything: each override's context is dry-run too
        (lambda p: p["overrides"][0]["thresholds"].update(report_risk=0.0), "guardrails", "new_users_safer"),
    ],
)
def test_dry_run_on_the_golden_batch_refuses_what_the_schema_lets_through(
    store_copy: tuple[Path, Path], edit: Any, field: str, words: str
) -> None:
    error = _refusal(store_copy, edit)
    assert error.field == field and "dry run" in error.message and words in error.message


def test_a_bundle_without_golden_batch_cannot_activate_policies(store_copy: tuple[Path, Path]) -> None:
    bundle = store_copy[0] / "demo_ranker" / "1"
    (bundle / "sample_request.json").unlink()
    (bundle / "golden.json").unlink(missing_ok=True)  # golden logits are recorded for the sample request
    error = _refusal(store_copy, None)
    assert "golden batch" in error.message and "sample_request.json" in error.fix


def test_a_valid_policy_reports_its_dry_run(store_copy: tuple[Path, Path]) -> None:
    store, policies = store_copy
    binding, report = GOLDEN.validate(policies / "home" / "2.yaml", BundleCache(store, 1))
    assert binding.policy.version == "2"
    assert report.candidates == 40
    assert report.answered == {"sample context": 20, "override new_users_safer": 20}
