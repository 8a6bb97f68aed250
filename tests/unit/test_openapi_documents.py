"""The OpenAPI documents: valid OpenAPI 3.1, checked in up to date, and naming every route served."""
import importlib.util
import json
import pathlib

import pytest
from aiohttp import web

from rescore_sidecar.connectors.proxy import routes
from rescore_sidecar.connectors.proxy.openapi import proxy_document
from rescore_sidecar.sidecar.config import SidecarConfig
from rescore_sidecar.sidecar.transport.http import HttpTransport
from rescore_sidecar.sidecar.transport.openapi import sidecar_document

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("gen_openapi", ROOT / "scripts" / "gen_openapi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_documents_are_current():
    stale = _generator().stale()
    assert not stale, f"docs/openapi/{stale} stale: run `make openapi` (scripts/gen_openapi.py) and commit"


@pytest.mark.parametrize("document", [sidecar_document, proxy_document])
def test_documents_are_valid_openapi_3_1(document):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(json.loads(json.dumps(document())))


def test_every_sidecar_route_is_documented_with_its_methods():
    app = HttpTransport(SidecarConfig(), serving=lambda: True).app()
    served = {(r.resource.canonical, r.method.lower()) for r in app.router.routes()
              if r.method != "HEAD" and isinstance(r.resource, web.Resource)}
    documented = {(path, method) for path, item in sidecar_document()["paths"].items() for method in item}
    assert served == documented


def test_every_proxy_endpoint_is_documented():
    documented = {(method.upper(), path) for path, item in proxy_document()["paths"].items() for method in item}
    own = {routes.HEALTH, routes.METRICS, routes.OPENAPI, routes.FEEDBACK}
    assert {routes.classify(method, path) for method, path in documented} == own


def test_served_document_narrows_models_and_documents_to_this_server():
    from rescore_sidecar.sidecar.transport.openapi import served_document

    schemas = served_document(["ce", "rerank-v3.5"], 16)["components"]["schemas"]
    assert schemas["CohereRequest"]["properties"]["model"]["enum"] == ["ce", "rerank-v3.5", "", None]  # "" and null: the default
    assert schemas["TeiRequest"]["properties"]["texts"]["maxItems"] == 16
    anything = served_document(None, 16)["components"]["schemas"]["CohereRequest"]["properties"]["model"]
    assert "enum" not in anything  # accept_any_model: every name is served
    assert "enum" not in sidecar_document()["components"]["schemas"]["CohereRequest"]["properties"]["model"]
