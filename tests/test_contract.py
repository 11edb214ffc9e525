"""The graph contract (realtime.contract): what a graph must have, and hostile metadata."""

from __future__ import annotations

import json

import pytest

from realtime import contract
from realtime.contract import ContractError, validate

INPUTS = {"image": ["N", 224, 224, 3], "targets": ["N", "K"]}


OUTPUTS = {
    "logits": ["N", 3],
    "probabilities": ["N", 3],
    "classes": ["N", "K"],
    "activations": ["N", 14, 14, 8],
    "weights": ["N", "K", 8],
    "cam": ["N", "K", 14, 14],
}


META = {contract.META_CONTRACT: contract.CONTRACT_VERSION, contract.META_LABELS: json.dumps(["a", "b", "c"])}


TYPES = {"image": "tensor(uint8)", "targets": "tensor(int64)"}


def test_a_good_graph_is_described() -> None:
    info = validate(INPUTS, OUTPUTS, META, "m", TYPES)
    assert (info.num_classes, info.map_height, info.channels, info.labels) == (3, 14, 8, ("a", "b", "c"))


@pytest.mark.parametrize(
    "types,message",
    [
        ({"image": "tensor(float)", "targets": "tensor(int64)"}, "image is tensor\\(float\\)"),
        ({"image": "tensor(uint8)", "targets": "tensor(int32)"}, "targets is tensor\\(int32\\)"),
    ],
)
def test_input_types_are_checked(types: dict[str, str], message: str) -> None:
    with pytest.raises(ContractError, match=message):
        validate(INPUTS, OUTPUTS, META, "m", types)


@pytest.mark.parametrize(
    "labels",
    [
        "[" * 100_000 + "]" * 100_000,  # nested too deep for the parser
        "[" + "9" * 5000 + ", 1, 2]",  # past Python's 4300-digit limit
        json.dumps([1, 2, 3]),  # not names
        json.dumps({"a": 1}),
        "not json",
        json.dumps(["a", "b"]),  # wrong count
    ],
)
def test_hostile_labels_are_a_contract_error(labels: str) -> None:
    with pytest.raises(ContractError):
        validate(INPUTS, OUTPUTS, {**META, contract.META_LABELS: labels}, "m", TYPES)


def test_absurd_declared_sizes_are_refused_before_anything_is_allocated() -> None:
    """A server or a file may declare any shape: 60000x60000 maps would be 14 GB of zeros for one lost panel."""
    inputs = {"image": [None, 224, 224, 3], "targets": [None, None]}
    outputs = {"logits": [None, 10], "probabilities": [None, 10], "classes": [None, None],
               "activations": [None, 60000, 60000, 512], "weights": [None, None, 512],
               "cam": [None, None, 60000, 60000]}  # fmt: skip
    with pytest.raises(ContractError, match="map height is 60000"):
        validate(inputs, outputs, {contract.META_CONTRACT: contract.CONTRACT_VERSION}, "http://host/huge")
