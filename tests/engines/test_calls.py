"""What every engine does around its call: results checked against the contract."""

from __future__ import annotations

import numpy as np
import pytest

from realtime import contract


def test_a_graph_whose_classes_are_out_of_range_is_a_contract_error(monkeypatch) -> None:
    from realtime.contract import ContractError
    from realtime.demo.models import demo_model_paths
    from realtime.engines.local import LocalEngine
    from realtime.engines.providers import EngineOptions

    engine = LocalEngine(demo_model_paths()["fair"], EngineOptions(providers="cpu", warmup=0))
    call = engine._call

    def broken(*args, **kwargs):
        values = call(*args, **kwargs)
        return {**values, contract.OUT_CLASSES: values[contract.OUT_CLASSES] + 1000}

    monkeypatch.setattr(engine, "_call", broken)
    with pytest.raises(ContractError, match=r"outside 0\.\.1; re-export"):
        engine.run(np.zeros((1, 224, 224, 3), np.uint8), [[-1]])
