"""The CLI's JSON contracts and the per-parcel summary a loan officer reads."""

import json
import math

from tests.support.paths import SAMPLE_TILES

# The observations contract, spelled out here on purpose (not imported from the code).
FIELDS = set(
    "scene_id acquired_at sensor ndvi_mean ndvi_median ndvi_p10 ndvi_p90 ndvi_std"
    " pixel_count valid_fraction cloud_fraction".split()
)


def test_observations_json_contract(sqlite_env, agri, scenes_subset):
    assert agri("db", "upgrade").exit_code == 0
    assert agri("parcels", "import", SAMPLE_TILES / "parcels.geojson").exit_code == 0
    run = agri("imagery", "run", "--inbox", scenes_subset, "--json")
    summary = json.loads(run.stdout)
    assert {"processed", "skipped", "failed", "scenes", "profiles_updated"} <= set(summary)
    assert {"scene_id", "status", "seconds"} <= set(summary["scenes"][0])
    for scene in summary["scenes"]:
        # sample items declare raster:bands scale/offset and their numbers agree
        assert scene["sensor"] in ("sentinel-2a", "sentinel-2b")
        assert scene["catalogue"] == "generic/sentinel-2-l2a"
        assert (scene["offset_rule"], scene["offset_contradicted"]) == ("raster:bands", False)
    rows = json.loads(agri("parcels", "observations", "T-05", "--json").stdout)
    assert len(rows) == 4
    assert all(set(r) == FIELDS for r in rows)
    assert [r["acquired_at"] for r in rows] == sorted(r["acquired_at"] for r in rows)
    for r in rows:
        assert r["acquired_at"].endswith("+00:00")
        assert r["sensor"] in ("sentinel-2a", "sentinel-2b")
        if r["ndvi_mean"] is None:
            assert r["valid_fraction"] == 0
        else:
            assert -1 <= r["ndvi_p10"] <= r["ndvi_median"] <= r["ndvi_p90"] <= 1
            assert not math.isnan(r["ndvi_std"])


def test_unknown_parcel_is_a_clear_error(sqlite_env, agri):
    result = agri("parcels", "observations", "NOPE", "--json")
    assert result.exit_code == 1 and "no parcel with id 'NOPE'" in result.output


def test_ingest_refuses_a_single_session_identity_for_its_partitions(sqlite_env, agri):
    """Partitions are always agri-ingest-pK: an --instance meant for a single session is a
    mistake to say, not to ignore (two processes could end up in one session)."""
    result = agri("ingest", "--instance", "1")
    assert result.exit_code == 2 and "--shared or --no-shared" in result.output


def test_parcel_list_shows_latest_clear_ndvi(sqlite_env, agri, scenes_subset):
    agri("parcels", "import", SAMPLE_TILES / "parcels.geojson")
    agri("imagery", "run", "--inbox", scenes_subset)
    out = agri("parcels", "list").stdout
    line = next(line for line in out.splitlines() if line.startswith("F-08"))
    assert "forest" in line and "2023-" in line
    assert "clear = at least 60%" in out


def test_every_command_is_in_the_lazy_table_and_its_module_is_imported_only_when_run():
    """COMMAND_MODULES is the one list of top-level commands: each module's COMMANDS are
    all in it under their own module, and a fresh `agri imagery --help` does not import
    the web server, the ingester or matplotlib."""
    import importlib
    import subprocess
    import sys

    from collateral.cli import COMMAND_MODULES

    found = {}
    for module_name in set(COMMAND_MODULES.values()):
        module = importlib.import_module(f"collateral.cli.{module_name}")
        found.update({command.name: module_name for command in module.COMMANDS})
    assert found == COMMAND_MODULES
    code = (
        "import sys; from collateral.cli import main\n"
        "try: main(['imagery', '--help'])\n"
        "except SystemExit: pass\n"
        "print(sorted(m for m in ('matplotlib', 'fastapi', 'paho', 'collateral.cli.livestock')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_program_ends_with_its_commands_code_and_all_its_output(tmp_path):
    """``agri`` as a process skips Python's teardown once a command is done: the exit code
    is still the command's and what it printed (here a page of help, piped) is whole."""
    import os
    import subprocess
    import sys

    from tests.support.processes import AGRI

    env = {**os.environ, "AGRI_DATABASE_URL": f"sqlite:///{tmp_path / 'agri.db'}"}
    helped = subprocess.run([*AGRI, "imagery", "sync", "--help"], env=env, capture_output=True)
    assert helped.returncode == 0 and helped.stdout.rstrip().endswith(
        b"Show this message and exit."
    )
    wrong = subprocess.run([*AGRI, "imagery", "nosuch"], env=env, capture_output=True)
    assert wrong.returncode == 2 and b"No such command 'nosuch'" in wrong.stderr
    failed = subprocess.run(
        [*AGRI, "imagery", "sync", "--stac-api", "http://127.0.0.1:9", "--collection", "x"],
        env=env,
        capture_output=True,
    )
    assert failed.returncode == 1 and b"cannot open the STAC API" in failed.stdout + failed.stderr
    # under a profiler, which writes its results after the program, Python's exit is kept
    profile = tmp_path / "help.prof"
    profiled = subprocess.run(
        [sys.executable, "-m", "cProfile", "-o", str(profile), *AGRI[1:], "--help"],
        env=env,
        capture_output=True,
    )
    assert profiled.returncode == 0 and profile.stat().st_size > 0
