"""A parcel profile as a PNG a loan officer can read (matplotlib, no screen needed)."""

from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from remote_sensing.profiles import MIN_VALID_FRACTION  # noqa: E402


def render_profile_png(profile: dict, path: Path) -> Path:
    """Observations (dot size = share of the parcel seen), smoothed curve, the parcel's
    usual range for the time of year (baseline +/- 2 spreads, reaching down by the usual
    dip), disturbances shaded."""
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
            label="usual range for the time of year",
        )
    if profile["smoothed"]:
        ax.plot(
            [date.fromisoformat(s["date"]) for s in profile["smoothed"]],
            [s["ndvi"] for s in profile["smoothed"]],
            color="tab:green",
            lw=2,
            label="smoothed NDVI (5-day)",
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
                label="observation (size: share seen)"
                if group is clear
                else f"mostly cloudy (< {MIN_VALID_FRACTION:.0%} seen)",
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
            label=f"disturbance {event['state']} ({event['affected_ha'] or 0:.1f} ha)",
        )
    health = profile["health_index"]
    ax.set_title(
        f"Parcel {profile['parcel_id']} ({profile['kind'].replace('_', ' ')}, "
        f"{profile['area_ha']:.2f} ha), health index "
        f"{'n/a' if health is None else f'{health:.2f}'}, as of {(profile['as_of'] or '')[:10]}"
    )
    ax.set_ylabel("NDVI (unitless, -1 to 1)")
    ax.set_xlabel("acquisition date (UTC)")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m"))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _day(iso: str) -> date:
    return date.fromisoformat(iso[:10])
