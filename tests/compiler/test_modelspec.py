"""MODEL specs: FILE.py:NAME (module or factory) and FILE.pt2, and every way they can be wrong."""
from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from torch import nn

from compiler.modelspec import ModelSpecError, resolve_model
from ir.errors import CompilerError

MODULE_FILE = """
    import torch
    from torch import nn
    from helper import WIDTH  # a sibling file: the file's directory is on sys.path while importing

    model = nn.Linear(WIDTH, 2)
    example_inputs = (torch.ones(1, WIDTH),)
    example_kwargs = {}

    def build():
        return nn.Linear(3, 3), (torch.ones(3),), {"bias_scale": 2}

    def build_pair():
        return nn.ReLU(), [torch.ones(2)]

    class Tiny(nn.Module):
        def forward(self, x):
            return x * 2

    def not_a_factory():
        return 42

    width = WIDTH
"""


def write(tmp_path, source: str, name: str = "net.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


@pytest.fixture
def net(tmp_path):
    write(tmp_path, "WIDTH = 4\n", "helper.py")
    yield write(tmp_path, MODULE_FILE)
    sys.modules.pop("helper", None)  # so the next test's helper.py is imported afresh


def one_line_error(spec: str) -> str:
    with pytest.raises(ModelSpecError) as info:
        resolve_model(spec)
    message = str(info.value)
    assert isinstance(info.value, CompilerError)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_module_takes_the_files_example_inputs(net):
    spec = resolve_model(f"{net}:model")
    assert isinstance(spec.model, nn.Linear) and spec.name == "model"
    assert len(spec.args) == 1 and spec.args[0].shape == (1, 4)
    assert spec.kwargs == {}


def test_sys_path_is_restored(net):
    before = list(sys.path)
    resolve_model(f"{net}:model")
    assert sys.path == before


def test_factory_with_kwargs(net):
    spec = resolve_model(f"{net}:build")
    assert isinstance(spec.model, nn.Linear) and spec.kwargs == {"bias_scale": 2}
    assert torch.equal(spec.args[0], torch.ones(3))


def test_factory_returning_a_list_of_inputs(net):
    spec = resolve_model(f"{net}:build_pair")
    assert isinstance(spec.model, nn.ReLU) and isinstance(spec.args, tuple) and spec.kwargs == {}


def test_module_class_uses_the_files_example_inputs(net):
    spec = resolve_model(f"{net}:Tiny")
    assert type(spec.model).__name__ == "Tiny" and spec.args[0].shape == (1, 4)


def test_pt2_is_passed_on_as_a_path(tmp_path):
    (tmp_path / "m.pt2").write_bytes(b"")
    spec = resolve_model(str(tmp_path / "m.pt2"))
    assert spec.model == str(tmp_path / "m.pt2") and spec.name == "m" and spec.args == ()


@pytest.mark.parametrize("spec", ["net.py", "net", ":model", "net.py:"])
def test_malformed_spec(spec):
    assert "MODEL must be FILE.py:NAME, FILE.pt2 or hf:NAME_OR_PATH" in one_line_error(spec)


def test_missing_file(tmp_path):
    assert "does not exist" in one_line_error(f"{tmp_path}/absent.py:model")
    assert "does not exist" in one_line_error(f"{tmp_path}/absent.pt2")


def test_missing_name_lists_what_the_file_defines(net):
    message = one_line_error(f"{net}:modle")
    assert "defines no 'modle'" in message
    # Modules, and functions/classes defined in the file; not imports, data or private names.
    assert "Tiny, build, build_pair, model, not_a_factory" in message
    assert "torch" not in message and "width" not in message


def test_name_that_is_not_a_model(net):
    assert "has type int; expected an nn.Module" in one_line_error(f"{net}:width")


def test_factory_returning_the_wrong_thing(net):
    assert "must return (module, example_inputs)" in one_line_error(f"{net}:not_a_factory")


def test_module_without_example_inputs(tmp_path):
    path = write(tmp_path, "from torch import nn\nmodel = nn.ReLU()\n")
    assert "no module-level 'example_inputs'" in one_line_error(f"{path}:model")


def test_example_inputs_must_be_a_tuple(tmp_path):
    path = write(tmp_path, "import torch\nfrom torch import nn\nmodel = nn.ReLU()\nexample_inputs = torch.ones(2)\n")
    assert "example_inputs must be a tuple" in one_line_error(f"{path}:model")


def test_exception_while_importing_names_the_users_line(tmp_path):
    path = write(tmp_path, """
        from torch import nn

        def make():
            raise ValueError("bad width\\nsecond line")

        model = make()
    """)
    message = one_line_error(f"{path}:model")
    assert f"importing '{path}' raised ValueError: bad width" in message
    assert f"{path}:5" in message  # the deepest frame in the user's file


def test_syntax_error_names_the_users_line(tmp_path):
    path = write(tmp_path, "x = 1\ndef broken(:\n")
    message = one_line_error(f"{path}:model")
    assert "SyntaxError" in message and f"{path}:2" in message


def test_exception_in_factory(tmp_path):
    path = write(tmp_path, "def build():\n    return 1 / 0\n")
    message = one_line_error(f"{path}:build")
    assert "ZeroDivisionError" in message and f"{path}:2" in message


def test_missing_dependency_is_reported_not_raised(tmp_path):
    path = write(tmp_path, "import no_such_package_waferc\n")
    message = one_line_error(f"{path}:model")
    assert "ModuleNotFoundError" in message and f"{path}:1" in message


# ---------------------------------------------------------------- hf: (size-only, on the meta device)

TINY_LLAMA = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=64, hidden_size=32,
                  intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=32, torch_dtype="float32")


def hf_error(spec: str) -> str:
    with pytest.raises(CompilerError) as info:
        resolve_model(spec)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_hf_preset_is_a_meta_model_with_decode_step_inputs():
    pytest.importorskip("transformers")
    spec = resolve_model("hf:llama-3.1-8b", batch=2)
    assert type(spec.model).__name__ == "LlamaForCausalLM" and spec.name == "llama-3.1-8b"
    assert {p.device.type for p in spec.model.parameters()} == {"meta"}
    assert len(spec.args) == 1 and spec.args[0].shape == (2, 1) and spec.args[0].device.type == "meta"
    assert spec.kwargs == {"use_cache": False}


def test_hf_directory_stays_on_meta_even_with_weights_beside_it(tmp_path):
    pytest.importorskip("transformers")
    directory = tmp_path / "tiny-llama"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(TINY_LLAMA))
    (directory / "model.safetensors").write_bytes(b"not read yet")
    spec = resolve_model(f"hf:{directory}", seq=4)
    assert spec.name == "tiny-llama" and spec.args[0].shape == (1, 4)
    assert {p.device.type for p in spec.model.parameters()} == {"meta"}


def test_hf_unsupported_architecture(tmp_path):
    pytest.importorskip("transformers")
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["FooForBar"], "model_type": "foo"}))
    message = hf_error(f"hf:{tmp_path}")
    assert "'FooForBar'" in message and str(tmp_path / "config.json") in message


def test_hf_hub_id_and_empty_name():
    assert "no access to the Hugging Face hub" in hf_error("hf:meta-llama/Llama-3.1-8B")
    assert "hf: needs a preset name or a directory" in hf_error("hf:")
