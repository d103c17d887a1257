"""The cluster's roundrobin rotation in memory (cluster/turns.py): two nodes' rotations
told each other's choices as NATS would carry them."""

from relayrouter.cluster.turns import Rotation


class Callee:
    def __init__(self, session_id: int) -> None:
        self.session_id = session_id

    def __repr__(self) -> str:
        return f"callee {self.session_id}"


def tell(source: Rotation, node: str, target: Rotation, incarnation: int = 1) -> int:
    (after, totals), _ = source.told()
    return target.hear(node, incarnation, after, totals)


def test_choices_told_between_them_rotate_as_on_one_router():
    x, y = Callee(1), Callee(2)
    a, b = Rotation(), Rotation()
    picked = []
    for i in range(8):
        here, there, name = (a, b, "a") if i % 2 == 0 else (b, a, "b")
        picked.append(here.choose([x, y]).session_id)
        assert tell(here, name, there) == 1  # one more call, heard
    assert picked == [1, 2] * 4


def test_choices_made_at_once_on_two_nodes_are_evened_out_by_the_next():
    callees = [Callee(i) for i in range(1, 5)]
    a, b = Rotation(), Rotation()
    sent = {c.session_id: 0 for c in callees}
    for _ in range(10):  # each node chooses twice before hearing the other: the same two callees
        for rotation in (a, b):
            for _ in range(2):
                sent[rotation.choose(callees).session_id] += 1
        tell(a, "a", b)
        tell(b, "b", a)
    # Each round both nodes send their two calls to the same two callees, and the next round
    # to the two others: no callee is left out however the rounds line up.
    assert sorted(sent.values()) == [10, 10, 10, 10]


def test_a_new_callee_is_not_flooded_to_catch_up():
    x, y, z = Callee(1), Callee(2), Callee(3)
    a = Rotation()
    for _ in range(10):
        a.choose([x, y])
    picked = [a.choose([x, y, z]).session_id for _ in range(6)]
    assert sorted(picked) == [1, 1, 2, 2, 3, 3]


def test_a_restarted_node_counts_afresh():
    x, y = Callee(1), Callee(2)
    a, b = Rotation(), Rotation()
    for _ in range(3):
        a.choose([x, y])
    assert tell(a, "a", b, incarnation=1) == 3
    again = Rotation()  # node a's next process
    again.choose([x, y])
    assert tell(again, "a", b, incarnation=2) == 1  # from zero, not refused as going backwards
    assert tell(again, "a", b, incarnation=2) == 0  # told twice: counted once


def test_callees_gone_are_forgotten():
    a = Rotation()
    for sid in range(1, 30):
        a.choose([Callee(sid), Callee(100)])
    assert len(a.served) <= 2 * 2 + 8 + 1
