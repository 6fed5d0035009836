"""The layering written in ARCHITECTURE.md, checked: the import-linter contracts in
pyproject.toml hold, collateral uses the domain packages only through their public names,
and each piece of plumbing has one home."""

import ast
import re
import subprocess
import sys
from pathlib import Path

from tests.support.paths import REPO_ROOT

PACKAGES = ("agri_common", "telemetry", "remote_sensing", "bioassets", "solar", "collateral")
SIBLING = "/".join(("..", "shared"))  # the team's folder beside a checkout: never read
PLUMBING = {"jsonable", "utc", "parse_time", "parse_as_of", "as_utc", "atomic_write"}


def _imports(package: str):
    """(module file, imported module, imported name) for every ``from X import Y``."""
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    yield path.relative_to(REPO_ROOT), node.module, alias.name


def test_the_import_linter_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "5 kept, 0 broken" in done.stdout


def test_collateral_uses_the_domains_through_their_public_names():
    private = [
        f"{path}: {module}.{name}"
        for path, module, name in _imports("collateral")
        if module.split(".")[0] in ("remote_sensing", "bioassets", "solar") and name.startswith("_")
    ]
    assert private == []


def test_plumbing_comes_from_its_one_home():
    borrowed = [
        f"{path}: {module}.{name}"
        for package in PACKAGES
        for path, module, name in _imports(package)
        if name in PLUMBING and not module.startswith("agri_common")
    ]
    assert borrowed == []
    defined = [
        f"{path.relative_to(REPO_ROOT)}: {node.name}"
        for package in PACKAGES[1:]
        for path in (REPO_ROOT / package).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name.lstrip("_") in PLUMBING
    ]
    assert defined == [], "a second copy of shared plumbing"


def test_importing_the_cli_changes_no_gdal_setting_of_the_process():
    """GDAL settings are scoped to the work (rasterio.Env), so the API or any other code
    in a process that imports the CLI keeps GDAL's own defaults: the process environment
    holds no GDAL variable beyond what importing rasterio itself sets."""

    def gdal_environment(imports: str) -> str:
        code = f"import os, {imports}; print(sorted(k for k in os.environ if 'GDAL' in k))"
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO_ROOT,
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    ours = gdal_environment(
        "collateral.cli, remote_sensing.imagery.job, remote_sensing.imagery.cluster"
    )
    assert ours == gdal_environment("rasterio")
    assert "GDAL_CACHEMAX" not in ours


def test_the_configuration_page_lists_every_setting():
    """The configuration table names every AGRI_ variable the settings object reads."""
    from collateral.settings import Settings

    readme = (REPO_ROOT / "docs" / "configuration.md").read_text()
    missing = [
        f"AGRI_{n.upper()}" for n in Settings.model_fields if f"`AGRI_{n.upper()}`" not in readme
    ]
    assert missing == []


def test_the_docs_stand_on_their_own():
    """Nothing in the repository's docs points outside it, every link between them leads
    to a file, and the README stays the entry (under 150 lines), not the manual."""
    docs = [REPO_ROOT / "README.md", REPO_ROOT / "ARCHITECTURE.md", REPO_ROOT / "BENCHMARKS.md"]
    docs += [REPO_ROOT / "deploy" / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    assert [d.name for d in docs if SIBLING in d.read_text()] == []
    broken = [
        (d.name, target)
        for d in docs
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", d.read_text())
        if not (d.parent / target).is_file()
    ]
    assert broken == []
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) < 150


def test_no_test_or_tool_reads_outside_the_repository():
    """A clone on its own runs its suite: real data is kept in tests/data/real, and no
    source names a folder beside the repository."""
    folder = SIBLING.rsplit("/", 1)[1]
    outside = (f'parent / "{folder}"', SIBLING, f'parents[2] / "{folder}"')
    sources = [
        p
        for p in REPO_ROOT.rglob("*.py")
        if not {".venv", "node_modules", "test_architecture.py"} & set(p.parts + (p.name,))
    ]
    assert len(sources) > 100
    assert [str(p) for p in sources if any(o in p.read_text() for o in outside)] == []
    real = REPO_ROOT / "tests" / "data" / "real"
    assert sum(f.stat().st_size for f in real.rglob("*") if f.is_file()) < 15e6


def test_the_topic_contract_is_spelled_in_one_place():
    """Every topic of the farm gateway protocol is built and parsed by telemetry.topics:
    no other source spells the topic root."""
    spelled = [
        str(p.relative_to(REPO_ROOT))
        for package in PACKAGES
        for p in (REPO_ROOT / package).rglob("*.py")
        if "agri/v1/farms" in p.read_text() and p != REPO_ROOT / "telemetry" / "topics.py"
    ]
    assert spelled == []


def test_the_transport_names_no_domain():
    """What a message means is the domain's: the transport's code names no tag, animal or
    plant (its docstrings may use them as examples), and every data channel it serves
    comes from a domain's registered schema."""
    named = []
    for path in sorted((REPO_ROOT / "telemetry").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
                text = node.value if isinstance(node.value, str) else node.value.decode()
                if re.search(r"\btag_id\b|\banimal|\bplant_id\b", text) and "\n" not in text:
                    named.append(f"{path.name}: {text!r}")
            elif isinstance(node, ast.Name | ast.Attribute):
                name = node.id if isinstance(node, ast.Name) else node.attr
                if re.search(r"tag|animal|plant", name.lower()):
                    named.append(f"{path.name}: {name}")
    assert named == []
    from collateral import domains
    from telemetry import payloads, topics

    served = {s.channel for s in domains.agent_schemas()}
    assert served == set(topics.DATA)
    assert set(payloads.by_channel(domains.agent_schemas())) == served


def test_no_module_import_circles():
    """No two modules import each other, directly or round a circle, not even for type
    checking: the types they share sit below both (remote_sensing.imagery.scene_types,
    remote_sensing.profiles.profiles' Series and Baseline)."""
    import grimp

    for package in PACKAGES:
        graph = grimp.build_graph(package)
        for module in sorted(graph.modules):
            for imported in graph.find_modules_directly_imported_by(module):
                back = graph.find_shortest_chain(importer=imported, imported=module)
                assert back is None, f"{module} -> {imported} -> ... -> {module}: {back}"
