"""waferc: compile PyTorch models onto wafer-scale PE meshes, emit WKL, simulate it.

    import compiler
    cm = compiler.compile(model, (x,), target="toy")
    y = cm(x)

The API is imported on first use, so `waferc --help` and the artifact tools stay light.
"""
__all__ = ["compile", "load", "CompiledModel", "RunResult"]


def __getattr__(name):
    if name in __all__:
        from compiler import api
        return getattr(api, name)
    raise AttributeError(f"module 'compiler' has no attribute {name!r}")
