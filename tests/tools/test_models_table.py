"""`python -m ltkd_jax.tools.models_table`: the parameter counts of the named models."""
import pytest


def test_models_cli_lists_the_named_models_and_refuses_unknown_ones(capsys):
    from ltkd_jax.tools import models_table as models_cli  # pylint: disable=import-outside-toplevel
    assert models_cli.main(["resnet8x4"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| resnet")]
    assert rows == ["| resnet8x4 | 32x32x3 | 1,233,540 | " + rows[0].split(" | ")[3]]  # mdistiller's count
    with pytest.raises(SystemExit) as exit_info:
        models_cli.main(["resnet8x4", "resnet_foo"])
    assert exit_info.value.code == 2
    assert "unknown model 'resnet_foo'; known: demo_resnet_student" in capsys.readouterr().err
