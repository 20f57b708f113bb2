"""doctor's gateway check: a pure function of the gathered gateway states."""

from __future__ import annotations

from comfyrig.comfy.catalog import Catalog
from comfyrig.doctor.checks_net import check_gateway
from comfyrig.doctor.context import DoctorContext, GatewayState


def view(*live: bool) -> dict[str, object]:
    return {"queue_remaining": 3, "backends": [{"name": f"worker-{n}", "url": f"http://127.0.0.1:{9000 + n}", "live": up}
                                               for n, up in enumerate(live)]}


def test_no_gateway_is_a_skip() -> None:
    assert check_gateway(DoctorContext(environ={})).status == "skip"


def test_every_worker_routable_with_the_same_nodes_passes() -> None:
    same = Catalog(frozenset({"EmptyImage", "SaveImage"}), frozenset({"sd15.safetensors"}))
    ctx = DoctorContext(environ={}, gateways=(GatewayState("http://127.0.0.1:8188", view=view(True, True),
                                                           catalogs={"worker-0": same, "worker-1": same}),))
    result = check_gateway(ctx)
    assert result.status == "pass" and "2 worker(s) routable" in result.message


def test_a_worker_down_or_lacking_nodes_or_models_is_named() -> None:
    ctx = DoctorContext(environ={}, gateways=(GatewayState(
        "http://127.0.0.1:8188", view=view(True, False, True),
        catalogs={"worker-0": Catalog(frozenset({"A", "B", "KSampler"}), frozenset({"sd15.safetensors", "x.gguf"})),
                  "worker-1": None,
                  "worker-2": Catalog(frozenset({"A", "Extra"}), frozenset({"sd15.safetensors"}))}),))
    result = check_gateway(ctx)
    assert result.status == "warn"
    assert "worker-1 not routable" in result.message
    assert ("worker-2 lacks node type(s) B, KSampler; lacks model(s) x.gguf; has node type(s) worker-0 lacks: Extra"
            in result.message)
    assert "models on every worker" in (result.fix or "")


def test_a_gateway_that_does_not_answer_is_a_warning() -> None:
    result = check_gateway(DoctorContext(environ={}, gateways=(GatewayState("http://127.0.0.1:8188", error="refused"),)))
    assert result.status == "warn" and "does not answer" in result.message
