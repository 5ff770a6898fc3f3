"""The expert audit (stable_verl.verl_ext.expert_audit) sees what the experts modules received, not what the replay
controller says it handed out: on a tiny Qwen3-MoE, CPU, float32."""

from __future__ import annotations

import torch

from stable_verl.core.routing import RoutingReplay
from stable_verl.verl_ext.expert_audit import ENV, ExpertAudit
from tests.support.moe_models import VOCAB, build, perturb_routers


def test_audit_reads_the_experts_inputs_under_replay(tmp_path, monkeypatch):
    model = build("qwen3_moe")
    rr = RoutingReplay.attach(model)
    assert ExpertAudit.from_env(model, rr.router_names) is None  # off unless the env names a folder
    monkeypatch.setenv(ENV, str(tmp_path / "audit"))
    audit = ExpertAudit.from_env(model, rr.router_names)
    ids = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), rr.record():
        model(ids)
    recorded = rr.routes()  # (12, 2, 2)
    assert torch.equal(audit.received(), recorded)  # native routing: the experts got the router's own top-k
    perturb_routers(model, 1.0)  # the routers would now pick other experts for most tokens
    with torch.no_grad():
        model(ids)
    native = audit.received()
    assert (native.sort(-1).values != recorded.sort(-1).values).any(-1).any(-1).float().mean() > 0.3
    with torch.no_grad(), rr.replay(recorded):
        model(ids)
    assert torch.equal(audit.received(), recorded)  # replay reached the experts
    audit.save({"experts": recorded})
    assert len(list((tmp_path / "audit").glob("*.pt"))) == 1
