"""The ``valley`` group: commands from other packages (``bench``, ``demo``) are part of it, and
one whose import fails says so when run instead of vanishing."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from scheduler.cli import cli
from scheduler.cli.lazy import LazyGroup
from scheduler.cli.tables import clip, display_width, table


@pytest.mark.parametrize(("command", "shown"), [("bench", "scenario"), ("demo", "--rate")])
def test_bench_and_demo_run_from_the_group_when_main_is_not_called(
    command: str, shown: str
) -> None:
    # tests and embedders use the group itself, not the ``valley`` script's main()
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert shown in result.output


def test_a_command_whose_import_fails_is_listed_and_fails_loudly_when_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "valley_broken_extra.py").write_text("import valley_no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    group = LazyGroup("valley", lazy={"extra": "valley_broken_extra:extra"})
    group.add_command(click.Command("fine", callback=lambda: click.echo("still works")))
    runner = CliRunner()

    listed = runner.invoke(group, ["--help"])
    assert listed.exit_code == 0, listed.output
    assert "extra" in listed.output and "unavailable" in listed.output
    for args in (["extra"], ["extra", "--help"], ["extra", "--some-option", "x"]):
        result = runner.invoke(group, args)
        assert result.exit_code == 1, result.output
        assert (
            "valley extra is unavailable: cannot import valley_broken_extra:extra: "
            "ModuleNotFoundError: No module named 'valley_no_such_dependency'"
        ) in result.output
    assert runner.invoke(group, ["fine"]).output == "still works\n"


def test_table_columns_line_up_on_screen_when_a_cell_is_chinese() -> None:
    text = table([("中关村金融", "quotes"), ("zgc-maps", "tiles")], ("TENANT", "NAME"))
    header, rule, chinese, ascii_row = text.splitlines()
    assert display_width(chinese[: chinese.index("quotes")]) == header.index("NAME")
    assert ascii_row.index("tiles") == header.index("NAME")
    assert rule == "----------  ------"  # 中关村金融 is ten columns wide


def test_clip_counts_screen_columns_when_text_is_chinese() -> None:
    assert clip("中关村金融中关村金融", 9) == "中关村..."
    assert display_width(clip("中关村金融中关村金融", 9)) <= 9
    assert clip("short", 9) == "short"
