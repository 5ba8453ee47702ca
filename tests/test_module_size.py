"""No module over 450 lines and no function over 100 (zoo, export, research, tools, tests)."""
import structure as S


def test_module_and_function_sizes():
    bad = S.size_violations()
    assert not bad, "\n".join(bad)
