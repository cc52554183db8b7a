"""Formal proofs of ternac's stream units with SymbiYosys from pip (YoWASP).

``python -m formal`` (``make formal``) runs every task of :data:`formal.units.TASKS`;
``tests/test_formal.py`` runs the fast ones in ``make test``. :mod:`formal.sby` is the
driver (the links to the YoWASP tools, RTLIL, the .sby file, the verdict),
:mod:`formal.props` the stream-contract building blocks, :mod:`formal.units` one harness a
unit with its properties. A development tool next to ``tests/``: not installed with the
package, and it imports the package (``ternac.hw``) from above, like the benches.
"""
