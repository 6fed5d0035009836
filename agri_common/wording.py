"""Texts people read, in their language: the message catalogues and what uses them.

Every sentence the server composes for a person (an alert's detail, why an animal is not
counted, why imagery is weak evidence, a refusal) has a machine code and parameters; its
English and Chinese wording live in ``agri_common/locales/{en,zh-CN}.json``, which the
officer's page bundles too. One catalogue for both, so the page and the PDF report say the
same thing. Parameters are already formatted (text), so a template needs only ``{name}``.

``Said`` is a ``str`` (the English sentence, what the API's ``detail`` fields and older
clients keep) that also carries its code and parameters for the places that store or
translate it.
"""

import json
import re
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path

LOCALES = ("zh-CN", "en")
DEFAULT = "en"
_HERE = Path(__file__).parent / "locales"


class Said(str):
    """An English sentence with the code and parameters it was composed from."""

    code: str
    params: dict[str, str]

    def __new__(cls, code: str, **params) -> "Said":
        texts = {k: str(v) for k, v in params.items()}
        words = catalogue(DEFAULT)
        self = super().__new__(cls, render(words[code], texts, words))
        self.code, self.params = code, texts
        return self

    def coded(self) -> dict:
        return {"code": self.code, "params": self.params}

    @classmethod
    def of(cls, form: dict) -> "Said":
        """The sentence again from its ``coded()`` form."""
        return cls(form["code"], **form["params"])


def worded(sentence: str) -> dict:
    """The columns a stored sentence fills: ``detail`` (English), ``code``, ``params``."""
    form = coded(sentence) or {"code": None, "params": None}
    return {"detail": str(sentence), **form}


def coded(text: str) -> dict | None:
    """``{"code", "params"}`` of a composed sentence, None for a plain string."""
    return text.coded() if isinstance(text, Said) else None


@cache
def catalogue(locale: str) -> dict[str, str]:
    return json.loads((_HERE / f"{locale}.json").read_text(encoding="utf-8"))


def render(template: str, params: dict[str, str], words: dict[str, str] | None = None) -> str:
    """``{name}`` is the parameter; ``{name|prefix}`` the catalogue's word for it
    (``{to_status|status}`` with ``to_status="watch"`` reads ``status.watch``)."""

    def fill(m: re.Match) -> str:
        value = params.get(m.group(1))
        if value is None:
            return m.group(0)
        return (words or {}).get(f"{m.group(2)}.{value}", value) if m.group(2) else value

    return re.sub(r"\{(\w+)(?:\|(\w+))?\}", fill, template)


def text(code: str, locale: str, **params) -> str:
    """The catalogue's wording of ``code`` in ``locale`` (English when it has none)."""
    words = catalogue(locale)
    template = words.get(code) or catalogue(DEFAULT).get(code, code)
    return render(template, {k: str(v) for k, v in params.items()}, words)


def translate(sentence: str, coded_form: dict | None, locale: str) -> str:
    """A stored sentence in ``locale``: from its code when it has one, else as stored."""
    if coded_form and coded_form.get("code"):
        return text(coded_form["code"], locale, **(coded_form.get("params") or {}))
    return sentence


def negotiate(accept_language: str | None, default: str = DEFAULT) -> str:
    """The best of LOCALES for an Accept-Language header (any zh-* reads zh-CN)."""
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        base = tag.strip().lower().split("-")[0]
        locale = {"zh": "zh-CN", "en": "en"}.get(base)
        if locale and weight > 0:
            ranked.append((-weight, i, locale))
    return min(ranked)[2] if ranked else default


def amount(value, locale: str, places: int = 2) -> str:
    """A CNY amount as Chinese and English banking documents write it: ``12.35万元`` at
    or above 10,000 yuan in Chinese (with the exact figure kept by the caller where it
    matters), ``1,234.56元`` below; ``CNY 123,456.78`` in English."""
    if value is None:
        return "-"
    number = Decimal(str(value))
    if locale == "zh-CN" and abs(number) >= 10000:
        return f"{(number / 10000).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}万元"
    exact = f"{number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP):,}"
    return f"{exact}元" if locale == "zh-CN" else f"CNY {exact}"


def validation_message(kind: str, english: str, context: dict | None, locale: str) -> str:
    """A request validation error (pydantic's ``type``, ``msg``, ``ctx``) in ``locale``:
    the catalogue's ``validation.<type>`` where it has one, else pydantic's English."""
    if locale == DEFAULT or f"validation.{kind}" not in catalogue(locale):
        return english
    return text(f"validation.{kind}", locale, **(context or {}))
