"""The tree panel's two-step update: a new level's scores first, then its pictures."""

from __future__ import annotations

import numpy as np
import pytest

import cnn_widgets as cw
from cnn_widgets.engine import tree_walk
from cnn_widgets.widgets.panels.tree import FULL_THUMBNAIL, THUMBNAIL, energy_box, thumbnail


def test_expanding_a_node_shows_the_scores_first_then_the_pictures(explorer, net):
    seen = []  # (tree, the pictures sent before it): the widget sets tree, then tree_pictures
    explorer.observe(lambda change: seen.append((change["new"], explorer.tree_pictures)), names="tree")
    child = explorer.tree["levels"][0]["children"][1]
    explorer.tree_path = [[child["layer"], child["channel"]]]
    assert len(seen) == 2
    (scores, _), (whole, scores_pictures) = seen
    pictures = explorer.tree_pictures
    assert scores["pending"] and not whole["pending"]
    # first: the new level's scores, its children without pictures, the node with the picture it had as a child
    pending = scores["levels"][1]
    assert [c["picture"] for c in pending["children"]] == [-1] * explorer.k
    assert pending["picture"] == child["picture"] and scores_pictures.shape[0] == 1 + explorer.k
    assert [(c["layer"], c["channel"], c["score"]) for c in pending["children"]] == [
        (c["layer"], c["channel"], c["score"]) for c in whole["levels"][1]["children"]]
    # then: the same scores with every picture, equal to the plain (reference) computation's
    unit = cw.Unit(child["layer"], child["channel"])
    with tree_walk.reference_path():
        reference = net.contribution_tree(explorer.image, explorer.resolved_target(), depth=1, k=explorer.k, path=(unit,))
    level = whole["levels"][1]
    for entry, node in zip([level, *level["children"]], [reference, *reference.children]):
        assert (entry["layer"], entry["channel"]) == (node.layer, node.channel)
        assert entry["score"] == node.score
        box = energy_box(node.picture)
        assert tuple(entry["box"]) == box
        crop = pictures[entry["picture"]].astype(int)
        assert np.abs(crop - thumbnail(node.picture, THUMBNAIL, box).astype(int)).max() <= 1
        full = explorer.tree_full[entry["picture"]].astype(int)
        assert np.abs(full - thumbnail(node.picture, FULL_THUMBNAIL).astype(int)).max() <= 1
    # going back up and down again: every level is known, one update with all pictures
    seen.clear()
    explorer.tree_path = []
    explorer.tree_path = [[child["layer"], child["channel"]]]
    assert [s["pending"] for s, _ in seen] == [False, False]


def _front_end_update(widget, state):
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []})


def test_a_new_selected_unit_starts_a_new_tree(explorer, net):
    """Issue 22, fault 6: with target "unit" and an expanded tree, choosing another layer kept the old
    tree_path, and the tree panel showed an error until the tree was collapsed."""
    explorer.target = "unit"
    explorer.layer = "blocks.4.2"
    child = explorer.tree["levels"][0]["children"][0]
    explorer.tree_path = [[child["layer"], child["channel"]]]
    assert explorer.error == "" and len(explorer.tree["levels"]) == 2
    explorer.layer = "blocks.5.3"
    assert explorer.tree_path == [] and explorer.error == ""
    assert explorer.tree["levels"][0]["layer"] == "blocks.5.3"
    explorer.channel = 1  # another channel of the same layer: also another root
    explorer.tree_path = [[explorer.tree["levels"][0]["children"][0]["layer"], explorer.tree["levels"][0]["children"][0]["channel"]]]
    explorer.channel = 2
    assert explorer.tree_path == [] and explorer.error == ""


def test_a_click_on_a_tree_no_longer_shown_is_dropped_quietly(explorer, net):
    """The front end sends a path built on the tree it showed; the root changed meanwhile."""
    explorer.target = "unit"
    explorer.layer = "blocks.4.2"
    old_child = explorer.tree["levels"][0]["children"][0]
    explorer.layer = "blocks.5.3"  # the kernel's new root ...
    _front_end_update(explorer, {"tree_path": [[old_child["layer"], old_child["channel"]]]})  # ... a stale click
    assert explorer.tree_path == [] and explorer.error == "" and len(explorer.tree["levels"]) == 1
    child = explorer.tree["levels"][0]["children"][0]  # a click on the tree shown expands it
    _front_end_update(explorer, {"tree_path": [[child["layer"], child["channel"]]]})
    assert explorer.tree_path == [[child["layer"], child["channel"]]] and len(explorer.tree["levels"]) == 2


def test_a_path_the_tree_cannot_follow_is_refused_by_the_setter(explorer, net):
    """One rule (the engine's check_path): a path the tree panel would reject is refused when it is set."""
    from traitlets import TraitError

    explorer.target = "unit"
    explorer.layer = "blocks.4.2"
    first = net.layer_names[0]  # a real unit, but not one layer below blocks.4.2
    assert net.layer_below("blocks.4.2") != first
    with pytest.raises(TraitError, match=r"not a path of the tree rooted in 'blocks\.4\.2'.*a path goes one layer down per step"):
        explorer.tree_path = [[first, 0]]
    below = net.layer_below("blocks.4.2")
    with pytest.raises(TraitError, match="out of range"):
        explorer.tree_path = [[below, net.layer(below).channels]]
    with pytest.raises(TraitError, match=r"\[layer name, channel index\] pairs"):
        explorer.tree_path = [[below, "0"]]
    assert explorer.tree_path == [] and explorer.error == "" and len(explorer.tree["levels"]) == 1
    explorer.tree_path = [[below, 0]]  # a step the tree shows is taken
    assert explorer.error == "" and len(explorer.tree["levels"]) == 2
