"""vLLM's CPU start-up walks every loaded module; modules it would crash on are unlisted meanwhile."""
import sys
import types

from rl.vllm_setup import modules_hidden_from_vllm_kernel_scan


class _ProxiesDict:
    """Like llvmlite's ffi.lib: `__dict__` answers with an object that is not a mapping."""

    __slots__ = ()  # no real __dict__, so the lookup falls through to __getattr__

    def __getattr__(self, name):
        return self


def test_module_with_dict_proxy_is_hidden_then_restored():
    odd = types.ModuleType("odd_ffi_for_test")
    odd.lib = _ProxiesDict()
    plain = types.ModuleType("plain_for_test")
    plain.value = object()
    sys.modules.update({odd.__name__: odd, plain.__name__: plain})
    try:
        with modules_hidden_from_vllm_kernel_scan():
            assert odd.__name__ not in sys.modules
            assert sys.modules[plain.__name__] is plain
        assert sys.modules[odd.__name__] is odd
    finally:
        sys.modules.pop(odd.__name__, None)
        sys.modules.pop(plain.__name__, None)


def test_llvmlite_is_the_known_case():
    import pytest
    pytest.importorskip("llvmlite.binding")
    with modules_hidden_from_vllm_kernel_scan():
        assert "llvmlite.binding.ffi" not in sys.modules
    assert "llvmlite.binding.ffi" in sys.modules
