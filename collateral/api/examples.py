"""The OpenAPI document's examples: the error responses (problem details, which no response
model of a route can say: the exception handlers write them) and the loan and valuation
that /docs shows."""

PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def _problem(status: int, title: str, detail: str) -> dict:
    example = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return {
        "description": title,
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA, "example": example}},
    }


PROBLEMS = {
    401: _problem(401, "Unauthorized", "send an API key as 'Authorization: Bearer <key>'"),
    403: _problem(403, "Forbidden", "role operator may not do this (needs loan_officer or ...)"),
    404: _problem(404, "Not Found", "loan 'LN-0042' does not exist"),
    422: _problem(422, "Unprocessable Entity", "parcel_ids.0: parcel 'X-1' is not registered"),
}
CONFLICT = {409: _problem(409, "Conflict", "loan 'LN-ANXI-0001' exists")}


# Examples that /docs shows (a real valuation of the demo data).
VALUATION_EXAMPLE = {
    "valuation_id": "VAL-472f95634f1d4a74aac0",
    "created_at": "2026-11-22T21:42:18.598858+00:00",
    "loan_id": "LN-ANXI-0001",
    "as_of": "2026-11-22T21:42:18.403593+00:00",
    "principal_cny": "1200000.00",
    "items": [
        {
            "kind": "forest",
            "ref": "F-08",
            "value_cny": "304320.73",
            "eligible_value_cny": "121728.29",
            "haircut": "0.60",
            "confidence": "reduced",
            "evidence": {
                "area_ha": "12.1282",
                "latest_clear_image": "2024-12-31T02:55:19+00:00",
                "disturbed_ha": "7.3244",
                "haircut": {
                    "base": "0.45",
                    "stale_evidence": "0.15",
                    "reasons": ["last clear image 2024-12-31 is 691 days old (limit 60)"],
                },
            },
            "formula": "(12.1282 ha - 7.3244 ha disturbed) x 181.00 m3/ha x 350.00 CNY/m3 = "
            "304,320.73 CNY; eligible = value x (1 - 0.60) = 121,728.29 CNY",
        }
    ],
    "collateral_value_cny": "3234375.18",
    "eligible_value_cny": "1543542.64",
    "ltv": "0.7774",
    "status": "watch",
    "thresholds": {"watch": "0.70", "margin_call": "0.85"},
    "formula": "LTV = principal / eligible value = 1,200,000.00 / 1,543,542.64 = 0.7774; "
    "watch at >= 0.70, margin call at >= 0.85",
    "prices_version": "default-2020",
    "policy_version": "default-2020",
    "illustrative_tables": True,
    "rules_version": "2026.11.1",
    "changes": None,
}

LOAN_EXAMPLE = {
    "loan_id": "LN-ANXI-0001",
    "borrower": "Wang Hui",
    "branch": "ANXI-01",
    "principal_cny": "1200000.00",
    "parcel_ids": ["F-08", "F-10", "T-04"],
    "herds": [{"farm_id": "FARM-SOW", "categories": ["breeding_sow"]}],
    "state": "active",
    "created_at": "2026-11-22T21:42:18.399362+00:00",
    "updated_at": "2026-11-22T21:42:18.399362+00:00",
    "latest_valuation": {
        "valuation_id": "VAL-472f95634f1d4a74aac0",
        "as_of": "2026-11-22T21:42:18.403593+00:00",
        "collateral_value_cny": "3234375.18",
        "eligible_value_cny": "1543542.64",
        "ltv": "0.7774",
        "status": "watch",
    },
}
