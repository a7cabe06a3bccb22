"""The word-to-slot assignment solvers behind `lightrnn.method.reallocate`.

The official greedy heuristic, the sparse exact matching on each word's best slots, the local
search, the auction on candidate slots, the dense exact matching and the lower bounds (per-side
Lagrangian, slot-price dual).

Notation (docs/PAPER.md, the reallocation step): V words, an R x C grid of slots, `row_loss` [V, R] and `col_loss`
[V, C] (float32 or float64, never copied whole: every pass over them goes in chunks of words so
that the 793,471 x 891 matrices of One Billion Word fit next to the solver), rows/cols [V] int64.
A slot is the flat index `row * C + col`; `owner` [R * C] holds the word in each slot, -1 if empty.

The modules: `costs` (objective, per-word costs, slot owners, word chunks), `heuristic` (the
official greedy), `bounds` (lower bounds), `local_search` (the local search and the dense exact
matching), `sparse` (the sparse exact matching and the slot-price bounds), `auction`. Callers use
`assignment.<name>`: the public names are imported here, the one re-export of the package. No
module is named after a function it holds (`greedy`, `exact`), so `assignment.greedy` is always the
function, never a submodule.
"""

from __future__ import annotations

from lightrnn.method.assignment.auction import auction_matching, auction_slots
from lightrnn.method.assignment.bounds import naive_bound, slot_subgradient_bound, smallest_k, transport_bound
from lightrnn.method.assignment.costs import objective, slot_owner, word_chunks, word_costs
from lightrnn.method.assignment.heuristic import greedy
from lightrnn.method.assignment.local_search import LocalSearch, exact, exact_bytes
from lightrnn.method.assignment.sparse import candidate_slots, priced_slot_bound, slot_price_bound, sparse_exact

__all__ = [
    "LocalSearch",
    "auction_matching",
    "auction_slots",
    "candidate_slots",
    "exact",
    "exact_bytes",
    "greedy",
    "naive_bound",
    "objective",
    "priced_slot_bound",
    "slot_owner",
    "slot_price_bound",
    "slot_subgradient_bound",
    "smallest_k",
    "sparse_exact",
    "transport_bound",
    "word_chunks",
    "word_costs",
]
