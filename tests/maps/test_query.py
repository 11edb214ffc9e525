"""What to explain: classes by name and id, targets rows."""

from __future__ import annotations

from realtime.maps.query import Query, class_id_in, targets_for
from realtime.outputs.browser.hub import parse_control


def test_a_class_picked_by_id_stays_that_id_and_other_models_match_it_by_name() -> None:
    """Numeric and repeated labels: id 2 of the first model ("7") is not id 7, and not the first "penguin"."""
    first = ["elephant", "penguin", "7", "penguin"]
    changes = parse_control({"class": 3}, first, frozenset())
    query = Query(**changes)
    assert class_id_in(query, first, first=True) == 3  # the id clicked, not the first "penguin"
    assert class_id_in(query, ["penguin", "elephant"], first=False) == 0  # by name in another model
    numeric = Query(**parse_control({"class": 2}, first, frozenset()))
    assert class_id_in(numeric, first) == 2
    assert class_id_in(numeric, [f"c{i}" for i in range(10)], first=False) is None  # no class named "7" there


def test_targets_rows() -> None:
    assert targets_for(Query(), None) == [-1]
    assert targets_for(Query(rank=2), None) == [-1, -1, -1]
    assert targets_for(Query(class_name="7", top_k=3), 7) == [7, -1, -1]
