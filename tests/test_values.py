"""Values: the valid/invalid corpus, defaults, merging and --set overrides."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from filesim import values

CORPUS = Path(__file__).parent / "values"
VALID = sorted((CORPUS / "valid").glob("*.yaml"))
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))


def test_corpus_is_not_empty():
    assert len(VALID) >= 4 and len(INVALID) >= 30


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_values_load(path):
    assert values.load([path]).nas_servers
    jsonschema.validate(values.load_dict([path]), values.schema())


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_values_are_rejected_with_their_message(path):
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    with pytest.raises(values.ValuesError) as caught:
        values.load([path])
    lines = caught.value.lines()
    assert any(expected in line for line in lines), lines
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert all(";" in line for line in lines), "every line says how to fix it"
    assert caught.value.exit_code == 2


def test_all_problems_of_a_file_are_reported_together(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("""
nasServers:
  - name: nas-output-1
    sync: {mode: to-nfs}
    service: {clusterIP: 10.96.100.1}
    podman: {port: 20001}
  - name: nas-output-1
    service: {clusterIP: 10.96.100.1}
    podman: {port: 20001}
""")
    with pytest.raises(values.ValuesError) as caught:
        values.load([bad])
    text = "\n".join(caught.value.lines())
    assert "sync.mode" in text and "name 'nas-output-1'" in text
    assert "clusterIP '10.96.100.1'" in text and "podman port 20001" in text


def test_schema_defaults_are_themselves_valid():
    minimal = {"nasServers": [{"name": "nas-backup", "service": {"clusterIP": "10.96.0.50"},
                               "podman": {"port": 20000}}]}
    filled = values.fill_defaults(minimal, values.schema())
    jsonschema.validate(filled, values.schema())
    nas = filled["nasServers"][0]
    assert nas["role"] == "backup" and nas["access"] == "rw"
    assert nas["sync"] == {"mode": "bidirectional", "interval": 2, "settle": 0.5,
                           "maxDeleteFraction": 0.5, "maxDeleteRate": 100, "maxDelay": 5,
                           "windowsNames": "encode",
                           "hashSweep": {"minutes": 30, "mbPerSecond": 4}, "logLevel": "info"}
    assert nas["versions"] == {"days": 7, "maxSize": "1Gi"}
    assert nas["storage"]["sizeLimit"] == "500Mi"
    assert filled["windowsRoot"] == "C:\\simulator-data" and filled["nodeRoot"] == "/mnt/simulator-data"


def test_role_defaults_for_inputs():
    nas = values.load().nas_servers[0]
    assert (nas.name, nas.role, nas.access, nas.sync.mode) == (
        "nas-input-1", "input", "ro", "to-nfs")


def test_default_topology_has_seven_nas_servers():
    names = [n.name for n in values.load().servers]
    assert names == ["nas-input-1", "nas-input-2", "nas-input-3", "nas-backup",
                     "nas-output-1", "nas-output-2", "nas-output-3"]


def test_later_files_win_and_set_overrides_last(tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("namespace: team-a\n")
    loaded = values.load([values.DEFAULT_VALUES, override],
                         ["nasServers[3].sync.interval=5", "nasServers[0].enabled=false",
                          "image.tag=dev"])
    assert loaded.namespace == "team-a"
    assert loaded.nas_servers[3].sync.interval == 5
    assert loaded.nas_servers[0].enabled is False
    assert loaded.image.tag == "dev"


def test_research_alias_sets_the_interval():
    loaded = values.load([CORPUS / "valid" / "research-shape.yaml"])
    assert loaded.nas_servers[0].sync.interval == 30


@pytest.mark.parametrize("assignment, message", [
    ("nasServers[0].sync.interval", "not of the form"),
    ("=5", "not of the form"),
    ("nasServers[99].name=x", "index 99 is past the end"),
    ("namespace.inner=x", "does not match"),
])
def test_bad_set_assignments(assignment, message):
    with pytest.raises(values.ValuesError) as caught:
        values.load([], [assignment])
    assert message in str(caught.value)


def test_set_value_that_breaks_a_rule_names_the_key():
    with pytest.raises(values.ValuesError) as caught:
        values.load([], ["nasServers[4].sync.interval=-1"])
    assert "nasServers[4].sync.interval: -1 is out of range" in str(caught.value)


def test_missing_file_is_one_clear_line(tmp_path):
    with pytest.raises(values.ValuesError) as caught:
        values.load([tmp_path / "nope.yaml"])
    assert caught.value.lines() == [f"{tmp_path / 'nope.yaml'}: (file): not found; check the path"]


def test_the_agent_defaults_are_the_schema_defaults():
    """The agent runs without the schema (it is in the image alone): its defaults must agree."""
    from filesim.quantity import to_bytes
    from filesim.sync.settings import Settings

    sync = values.load_dict()["nasServers"][0]["sync"]
    versions = values.load_dict()["nasServers"][0]["versions"]
    agent = Settings(None, None, None, "bidirectional")
    assert (agent.interval, agent.settle, agent.max_delay, agent.max_delete_fraction,
            agent.max_delete_rate, agent.windows_names, agent.hash_sweep_minutes,
            agent.hash_sweep_mb_per_second, agent.log_level, agent.versions_days,
            agent.versions_max_bytes) == (
        sync["interval"], sync["settle"], sync["maxDelay"], sync["maxDeleteFraction"],
        sync["maxDeleteRate"], sync["windowsNames"], sync["hashSweep"]["minutes"],
        sync["hashSweep"]["mbPerSecond"], sync["logLevel"], versions["days"],
        to_bytes(versions["maxSize"]))


EXAMPLE_OVERLAY = Path(__file__).parents[1] / "values" / "examples" / "overlay.yaml"


def test_an_overlay_changes_adds_and_removes_nas_servers_by_name():
    base = values.load([values.DEFAULT_VALUES])
    merged = values.load([values.DEFAULT_VALUES, EXAMPLE_OVERLAY])

    names = [nas.name for nas in merged.servers]
    assert names == [n.name for n in base.servers if n.name != "nas-input-3"] + ["nas-output-4"]
    backup, before = merged.server("nas-backup"), base.server("nas-backup")
    assert backup.sync.interval == 5 and before.sync.interval != 5
    assert backup.service == before.service and backup.sync.mode == before.sync.mode
    assert merged.server("nas-output-4").role == "output"


def test_the_issues_one_nas_overlay_needs_nothing_else(tmp_path):
    mine = tmp_path / "my.yaml"
    mine.write_text("nasServers: [{name: nas-backup, sync: {interval: 5}}]\n")
    merged = values.load([values.DEFAULT_VALUES, mine])
    assert merged.server("nas-backup").sync.interval == 5
    assert len(merged.servers) == len(values.load([]).servers)


def test_set_addresses_a_nas_by_name_and_a_new_name_without_its_fields_is_named():
    merged = values.load([], ["nasServers[nas-output-2].sync.settle=1.5"])
    assert merged.server("nas-output-2").sync.settle == 1.5
    with pytest.raises(values.ValuesError) as caught:
        values.load([], ["nasServers[nas-output-9].sync.interval=3"])
    assert any(line.split(": ")[1].startswith("nasServers[7]") for line in caught.value.lines())


def test_lists_that_are_not_named_are_still_replaced_whole():
    merged = values.deep_merge({"a": [1, 2], "n": [{"name": "x", "v": 1}]},
                               {"a": [3], "n": [{"name": "x", "v": 2}, {"name": "y"}]})
    assert merged == {"a": [3], "n": [{"name": "x", "v": 2}, {"name": "y"}]}
