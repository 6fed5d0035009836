"""A parcel profile as a PNG a loan officer can read (matplotlib, no screen needed)."""

import glob
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

from agri_common.wording import text  # noqa: E402
from remote_sensing.profiles.profiles import MIN_VALID_FRACTION  # noqa: E402

# Latin glyphs from DejaVu, Chinese from Debian's Noto CJK (fonts-noto-cjk) as fallback;
# matplotlib names a .ttc by its first face, "Noto Sans CJK JP", which has every hanzi.
CJK = "Noto Sans CJK JP"
CJK_FILES = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
FONTS = {"zh-CN": ["DejaVu Sans", CJK], "en": ["DejaVu Sans"]}


def _with_cjk() -> None:
    """Make the CJK font known to matplotlib even when its font cache predates the
    font's installation (matplotlib does not look again by itself)."""
    if not any(f.name == CJK for f in font_manager.fontManager.ttflist):
        for path in glob.glob(CJK_FILES):
            font_manager.fontManager.addfont(path)


def render_profile_png(profile: dict, path: Path, locale: str = "en") -> Path:
    """Observations (dot size = share of the parcel seen), smoothed curve, the parcel's
    usual range for the time of year (baseline +/- 2 spreads, reaching down by the usual
    dip), disturbances shaded; worded in ``locale`` (agri_common.wording)."""
    if locale == "zh-CN":
        _with_cjk()
    with plt.rc_context({"font.family": FONTS.get(locale, FONTS["en"])}):
        return _render(profile, Path(path), lambda code, **p: text(code, locale, **p))


def _render(profile: dict, path: Path, say) -> Path:
    fig, ax = plt.subplots(figsize=(11, 5), dpi=110)
    obs = [o for o in profile["observations"] if o["ndvi_mean"] is not None]
    clear = [o for o in obs if o["valid_fraction"] >= MIN_VALID_FRACTION]
    hazy = [o for o in obs if o["valid_fraction"] < MIN_VALID_FRACTION]
    if profile["baseline"]:
        days = [date.fromisoformat(b["date"]) for b in profile["baseline"]]
        low = [
            b["expected"] - b.get("allowance", 0.0) - 2 * b["spread"] for b in profile["baseline"]
        ]
        high = [b["expected"] + 2 * b["spread"] for b in profile["baseline"]]
        ax.fill_between(
            days,
            low,
            high,
            color="tab:green",
            alpha=0.15,
            step="mid",
            label=say("chart.usual_range"),
        )
    if profile["smoothed"]:
        ax.plot(
            [date.fromisoformat(s["date"]) for s in profile["smoothed"]],
            [s["ndvi"] for s in profile["smoothed"]],
            color="tab:green",
            lw=2,
            label=say("chart.smoothed"),
        )
    for group, style in (
        (clear, {"color": "black"}),
        (hazy, {"facecolors": "none", "edgecolors": "grey"}),
    ):
        if group:
            ax.scatter(
                [_day(o["acquired_at"]) for o in group],
                [o["ndvi_mean"] for o in group],
                s=[10 + 60 * o["valid_fraction"] for o in group],
                zorder=3,
                **style,
                label=say("chart.observation")
                if group is clear
                else say("chart.cloudy", share=f"{MIN_VALID_FRACTION:.0%}"),
            )
    end_default = _day(profile["as_of"]) if profile["as_of"] else None
    for event in profile["events"]:
        start = date.fromisoformat(event["start"])
        end = date.fromisoformat(event["end"]) if event["end"] else end_default or start
        ax.axvspan(
            start,
            end,
            color="tab:red",
            alpha=0.2,
            label=say(
                "chart.disturbance", state=event["state"], ha=f"{event['affected_ha'] or 0:.1f}"
            ),
        )
    health = profile["health_index"]
    ax.set_title(
        say(
            "chart.title",
            parcel=profile["parcel_id"],
            kind=profile["kind"],
            ha=f"{profile['area_ha']:.2f}",
            health="n/a" if health is None else f"{health:.2f}",
            day=(profile["as_of"] or "")[:10],
        )
    )
    ax.set_ylabel(say("chart.ndvi_axis"))
    ax.set_xlabel(say("chart.date_axis"))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _day(iso: str) -> date:
    return date.fromisoformat(iso[:10])
