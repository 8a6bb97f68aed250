"""Proxy settings (flags > environment > YAML > defaults), routes and toggle parsing."""
from __future__ import annotations

import pytest

from rescore_sidecar.connectors.proxy import routes
from rescore_sidecar.connectors.proxy.config import ConfigError, load_config
from rescore_sidecar.connectors.proxy.toggle import ToggleError, merge_toggles, parse_toggle


def test_precedence_flags_over_env_over_yaml(tmp_path):
    path = tmp_path / "proxy.yaml"
    path.write_text("upstream: [http://yaml:9200, http://yaml2:9200]\nlisten: 127.0.0.1:1\n"
                    "budget_ms: 100\nrescore: {window: 30, fields: [title, body]}\n"
                    "arms:\n  - {name: model, weight: 3, options: {window: 10}}\n"
                    "  - {name: control, weight: 1, options: null}\n")
    env = {"RESCORE_PROXY_CONFIG": str(path), "RESCORE_PROXY_LISTEN": "127.0.0.1:2",
           "RESCORE_PROXY_BUDGET_MS": "200"}
    config = load_config(["--budget-ms", "300"], env)
    assert config.upstreams == ("http://yaml:9200", "http://yaml2:9200")
    assert config.listen_port == 2 and config.budget_ms == 300.0
    core = config.connector_config()
    assert core.default.window == 30 and core.default.fields == ("title", "body")
    # Arm options override the `rescore` defaults; a null-options arm is a control arm.
    assert core.arms[0].options.window == 10 and core.arms[0].options.fields == ("title", "body")
    assert core.arms[1].options is None
    assert core.sidecar.budget_ms == 300.0
    assert load_config(["--upstream", "http://a", "--default-enabled", "off"], {}).connector_config().default.enabled is False


@pytest.mark.parametrize("argv, message", [
    ([], "at least one upstream"),
    (["--upstream", "ftp://x"], "must start with http"),
    (["--upstream", "http://a", "--listen", "nope"], "HOST:PORT"),
    (["--upstream", "http://a", "--max-request-bytes", "many"], "max_request_bytes"),
    (["--upstream", "http://a", "--rescore", '{"windw": 3}'], "unknown rerank option"),
    (["--upstream", "http://a", "--rescore", "{bad"], "not valid JSON"),
    (["--upstream", "http://a", "--arms", '[{"weight": 1}]'], "needs a name"),
    (["--upstream", "http://a", "--arms", '[{"name": "a", "weight": 0}]'], "weights"),
    (["--upstream", "http://a", "--default-enabled", "perhaps"], "boolean"),
    (["--upstream", "http://a", "--upstream-client-key", "k.pem"], "needs upstream_client_cert"),
])
def test_bad_settings_are_clear_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_config(argv, {})


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("upstream: http://a\nno_such_key: 1\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_config(["--config", str(bad)], {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(["--config", str(tmp_path / "missing.yaml")], {})


def test_cli_reports_config_errors_with_exit_code_2(capsys):
    from rescore_sidecar.connectors.proxy.cli import main

    assert main(["--upstream", "nope"]) == 2
    assert "must start with http" in capsys.readouterr().err


@pytest.mark.parametrize("method, path, route", [
    ("GET", "/_search", routes.SEARCH), ("POST", "/idx/_search", routes.SEARCH),
    ("POST", "/a,b*/_search/", routes.SEARCH), ("GET", "/_all/_search", routes.SEARCH),
    ("POST", "/_msearch", routes.MSEARCH), ("GET", "/idx/_msearch", routes.MSEARCH),
    ("POST", "/_search/scroll", routes.OTHER), ("POST", "/idx/_search/template", routes.OTHER),
    ("POST", "/_msearch/template", routes.OTHER), ("PUT", "/idx/_search", routes.OTHER),
    ("DELETE", "/_search/scroll", routes.OTHER), ("POST", "/_cat/_search", routes.OTHER),
    ("GET", "/idx/_doc/_search", routes.OTHER), ("GET", "/_rescore/health", routes.HEALTH),
    ("GET", "/_rescore/metrics", routes.METRICS), ("GET", "/_rescore/openapi.json", routes.OPENAPI),
    # The proxy's namespace never reaches the engine (schemathesis found TRACE /_rescore/health passed through).
    ("POST", "/_rescore/metrics", routes.OWN_UNKNOWN), ("TRACE", "/_rescore/health", routes.OWN_UNKNOWN),
    ("GET", "/_rescore/nothing", routes.OWN_UNKNOWN),
])
def test_routes(method, path, route):
    assert routes.classify(method, path) == route


def test_toggle_parameter_is_removed_and_the_rest_kept_byte_for_byte():
    assert routes.split_toggle("a=%2F&rescore=off&b=x+y&c") == ("a=%2F&b=x+y&c", "off")
    assert routes.split_toggle("rescore=%7B%22window%22%3A5%7D") == ("", '{"window":5}')
    assert routes.split_toggle("rescored=1&q=rescore") == ("rescored=1&q=rescore", None)


def test_toggles():
    assert parse_toggle("ON", "h") == (True, {})
    assert parse_toggle(" off ", "h") == (False, {})
    assert parse_toggle('{"window": 5}', "h") == (True, {"window": 5})
    assert parse_toggle({"enabled": False, "window": 5}, "h") == (False, {"window": 5})
    for bad in ("maybe", "{x", 3, {"enabled": "no"}):
        with pytest.raises(ToggleError):
            parse_toggle(bad, "h")
    assert merge_toggles(None, None) is None
    assert merge_toggles("off", None) is False
    # Most specific wins: body > query > header; options merge.
    assert merge_toggles('{"window": 5}', "off", {"policy": "rrf"}) == {"window": 5, "policy": "rrf", "enabled": True}
    assert merge_toggles('{"window": 5}', "off") == {"window": 5, "enabled": False}


def test_every_setting_is_documented_in_one_row():
    import pathlib

    from rescore_sidecar.connectors.proxy.config import ProxyConfig, env_name, flag_name
    from rescore_sidecar.sidecar.settings import undocumented

    doc = (pathlib.Path(__file__).resolve().parents[4] / "docs" / "proxy.md").read_text()
    # Rows of the settings table: | `--flag VALUE` | `VARIABLE` | `yaml_key` | default | what |
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in doc.splitlines()
            if line.startswith("| `--")]
    table = "\n".join(f"{cells[0].split()[0].strip('`')} {cells[1]} {cells[2]}" for cells in rows)
    missing = undocumented(ProxyConfig, table + "\n", lambda name: [
        f"--{flag_name(name).replace('_', '-')} `{env_name(name)}` `{name}`\n"])
    assert not missing, f"settings missing from docs/proxy.md's table: {missing}"
    assert len(rows) == len(ProxyConfig.model_fields)  # and no row for a setting that is gone


def test_flags_are_generated_from_the_settings():
    from rescore_sidecar.connectors.proxy.config import ProxyConfig, build_parser, flag_name

    flags = {o for a in build_parser()._actions for o in a.option_strings} - {"-h", "--help", "--config"}
    assert flags == {"--" + flag_name(name).replace("_", "-") for name in ProxyConfig.model_fields}


def test_environment_uses_the_flag_spelling_and_yaml_takes_both(tmp_path):
    path = tmp_path / "proxy.yaml"
    path.write_text("upstreams: [http://a:9200]\nsidecar: [s:1]\nmax-json-depth: 7\nsidecar_tls: on\n")
    env = {"RESCORE_PROXY_CONFIG": str(path), "RESCORE_PROXY_SIDECAR": "s:2, s:3",
           "RESCORE_PROXY_UPSTREAM_INSECURE": "yes", "RESCORE_PROXY_AB_SALT": "x"}
    config = load_config([], env)
    assert config.upstreams == ("http://a:9200",) and config.sidecars == ("s:2", "s:3")
    assert config.max_json_depth == 7 and config.sidecar_tls is True and config.upstream_insecure is True
    assert config.ab_salt == "x"
    # The field-name spelling of a singular variable is not read: RESCORE_PROXY_SIDECARS means nothing.
    assert load_config(["--upstream", "http://a"], {"RESCORE_PROXY_SIDECARS": "s:9"}).sidecars == ()


def test_token_never_shows():
    config = load_config(["--upstream", "http://a", "--sidecar-token", "s3cret"], {})
    assert config.sidecar_token == "s3cret" and "s3cret" not in repr(config)


def test_experiment_setting_builds_the_core_experiment(tmp_path):
    spec = ('{"name": "exp", "mode": "interleave", "arms": [{"name": "bm25", "options": null},'
            ' {"name": "model", "options": {"window": 7}}]}')
    events = str(tmp_path / "events.jsonl")
    core = load_config(["--upstream", "http://a", "--rescore", '{"fields": ["title"]}', "--experiment", spec,
                        "--experiment-events", events], {}).connector_config()
    exp = core.experiment
    assert exp.name == "exp" and exp.mode == "interleave" and exp.events == events
    assert exp.arms[0].options is None
    assert exp.arms[1].options.window == 7 and exp.arms[1].options.fields == ("title",)  # over --rescore
    assert load_config(["--upstream", "http://a"], {}).connector_config().experiment is None
    assert routes.classify("POST", "/_rescore/feedback") == routes.FEEDBACK
    assert routes.classify("GET", "/_rescore/feedback") == routes.OWN_UNKNOWN


@pytest.mark.parametrize("spec, message", [
    ('{"name": "e", "arms": [{"name": "a", "options": null}]}', "two arms"),
    ('{"name": "e", "mode": "ab", "arms": [{"name": "a"}, {"name": "b"}]}', "mode"),
    ('{"name": "e", "arms": [{"name": "a", "options": null}, {"name": "b", "options": null}]}', "at least one arm"),
    ('{"name": "e", "arms": [], "seed": 1}', "unknown keys"),
    ('[1]', "mapping"),
])
def test_bad_experiment_is_a_clear_error(spec, message):
    with pytest.raises(ConfigError, match=message):
        load_config(["--upstream", "http://a", "--experiment", spec], {})
