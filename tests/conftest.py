"""Test ordering for `make test` (pytest -n 2).

pytest-xdist's load scheduler deals the first quarter of the collected tests out one at a
time, round robin, and the rest as workers free up. Tests that take a minute on a clean
clone (a cold Verilator build, a Ray sweep, a k-induction proof) collected late would run
while the other worker has nothing left: the suite's tail. So they are collected first, in
the order of their cold-run times on this 2-core machine (2026-12-03, `pytest --durations`,
14 s to 204 s); every other test keeps pytest's order. The order changes no result.
"""
from __future__ import annotations

#: Node-id prefixes of the longest tests on a clean clone, longest first.
LONG_FIRST = (
    "tests/test_sweep.py::test_two_point_sweep_on_local_ray",
    "tests/test_formal.py::test_proof[requant]",
    "tests/test_bench.py::test_bench_lm_without_build_and_cache",
    "tests/test_dot.py::test_attention_graph_on_verilator_equals_interpreter",
    "tests/test_cycles.py::test_lm_sampling_within_2_percent_of_rtl",
    "tests/test_lm_cosim.py::test_lm_over_the_uart_of_the_cosimulated_icebreaker_matches",
    "tests/test_lm_rtl.py::test_lm_bit_exact_on_rtl_at_128_lanes",
    "tests/test_t3.py::test_verilator_lm_t3_every_logit_equals_golden",
    "tests/test_cycles.py::test_digits_program_within_2_percent_of_rtl",
    "tests/test_sim_cli.py::test_sim_engine_writes_a_vcd_with_its_ports",
    "tests/test_boards.py::test_spram_banks_in_verilator",
    "tests/test_vit.py::test_rtl_equals_golden_on_a_subset",
    "tests/test_rtl_units.py::test_units_inside_the_digits_accelerator_keep_the_stream_contract",
    "tests/test_formal.py::test_not_vacuous[sequencer_live_epi",
    "tests/test_lower.py::test_compile_and_image_info_work_for_every_model",
    "tests/test_faults.py::test_campaign_slice_no_silent_corruption_no_hang",
    "tests/test_faults.py::test_board_slice_real_accelerator_matches_golden_under_faults",
    "tests/test_rtl_vector.py::test_serial_activation_every_element",
    "tests/test_formal.py::test_not_vacuous[sequencer_live_dot",
    "tests/test_t3.py::test_verilator_digits_t3_every_logit_equals_golden",
)


def _rank(nodeid: str) -> int:
    for i, prefix in enumerate(LONG_FIRST):
        if nodeid.startswith(prefix):
            return i
    return len(LONG_FIRST)


def pytest_collection_modifyitems(session, config, items):
    """Move the :data:`LONG_FIRST` tests to the front (a stable sort: the rest keep their
    order, so every xdist worker collects the same sequence)."""
    items.sort(key=lambda item: _rank(item.nodeid))
