"""The broker's reason for a death during boot, read from what the node wrote (no broker needed)."""

from __future__ import annotations

import doctest
from pathlib import Path

from rig.cluster import _boot
from rig.cluster._boot import boot_crash_reason, read_since

# RabbitMQ 3.10's BOOT FAILED block for an exception (rabbit_prelaunch_errors:format_exception: the
# class:term, then "    mod:fun/arity, line N" frames), as the feature-flag sync race would print it;
# the node log has the same lines behind its "<time> [error] <pid> " prefix.
BADMAP_STDOUT = """\
  Starting broker...

BOOT FAILED
===========
Exception during startup:

error:{badmap,undefined}

    rabbit_feature_flags:enable_dependencies/2, line 1416
        args: [drop_unroutable_metric,true]
    rabbit_feature_flags:enable_locally/1, line 1350
    rabbit_feature_flags:do_sync_feature_flags_with_node/2, line 2202
    rabbit_mnesia:init_with_lock/3, line 130

{"init terminating in do_boot",{badmap,undefined}}
init terminating in do_boot ({badmap,undefined})
"""

BADMAP_LOG = "\n".join(
    f"2026-12-07 01:17:25.289021+00:00 [error] <0.223.0> {line}" for line in BADMAP_STDOUT.splitlines()
)


def test_the_badmap_crash_is_named_with_its_function_and_the_sync_it_came_through() -> None:
    expected = (
        "{badmap,undefined} in rabbit_feature_flags:enable_dependencies/2 "
        "(via rabbit_feature_flags:do_sync_feature_flags_with_node/2)"
    )
    assert boot_crash_reason(BADMAP_STDOUT) == expected
    assert boot_crash_reason(BADMAP_LOG) == expected  # the log's prefixes are stripped


# What a node printed to stdout (captured here, RabbitMQ 3.10.8) when its rabbitmq.conf set an unknown key.
CONFIG_STDOUT = """\
  Starting broker... completed with 5 plugins.
2026-12-07 01:28:05.277335+00:00 [error] <0.132.0> You've tried to set this_is_not_a_setting, but there is no setting with that name.
2026-12-07 01:28:05.286168+00:00 [error] <0.132.0>   Did you mean one of these?
2026-12-07 01:28:05.340681+00:00 [error] <0.132.0>     tcp_listen_options
2026-12-07 01:28:05.340816+00:00 [error] <0.132.0> Error preparing configuration in phase transform_datatypes:
2026-12-07 01:28:05.340831+00:00 [error] <0.132.0>   - Conf file attempted to set unknown variable: this_is_not_a_setting
2026-12-07 01:28:05.342464+00:00 [error] <0.132.0> BOOT FAILED
2026-12-07 01:28:05.342464+00:00 [error] <0.132.0> ===========
2026-12-07 01:28:05.342464+00:00 [error] <0.132.0> Error during startup: {error,failed_to_prepare_configuration}
2026-12-07 01:28:05.342464+00:00 [error] <0.132.0>
===========
Error during startup: {error,failed_to_prepare_configuration}

{"Kernel pid terminated",application_controller,"{application_start_failure,rabbitmq_prelaunch,{{shutdown,{failed_to_start_child,prelaunch,failed_to_prepare_configuration}},{rabbit_prelaunch_app,start,[normal,[]]}}}"}
Kernel pid terminated (application_controller) ({application_start_failure,rabbitmq_prelaunch,{{shutdown,{failed_to_start_child,prelaunch,failed_to_prepare_configuration}},{rabbit_prelaunch_app,start,[normal,[]]}}})
"""


def test_a_configuration_error_names_the_setting() -> None:
    assert boot_crash_reason(CONFIG_STDOUT) == (
        "{error,failed_to_prepare_configuration}: Error preparing configuration in phase "
        "transform_datatypes: - Conf file attempted to set unknown variable: this_is_not_a_setting"
    )


def test_a_kernel_pid_terminated_line_when_there_is_no_startup_exception() -> None:
    text = (
        "some noise\nKernel pid terminated (application_controller) ({application_start_failure,rabbit,x})\n"
    )
    reason = boot_crash_reason(text)
    assert reason is not None and reason.startswith("Kernel pid terminated (application_controller)")


def test_an_error_line_as_the_last_resort_and_none_for_a_quiet_death() -> None:
    assert boot_crash_reason("starting\nerror: could not read /x/rabbitmq.conf\n") == (
        "error: could not read /x/rabbitmq.conf"
    )
    # A SIGKILLed VM writes nothing about it: no reason is made up.
    assert boot_crash_reason("  Starting broker...\n") is None
    assert boot_crash_reason("") is None


def test_a_long_reason_is_cut_to_one_short_line() -> None:
    term = "{" + ",".join(["a_very_long_atom"] * 60) + "}"
    reason = boot_crash_reason(f"Exception during startup:\n\nerror:{term}\n")
    assert reason is not None and len(reason) <= _boot.REASON_MAX and reason.endswith("…")
    assert "\n" not in reason


def test_only_what_this_boot_wrote_is_read(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    log.write_text(BADMAP_STDOUT)
    mark = _boot.size(log)
    with log.open("a") as f:
        f.write("  Starting broker...\n")
    # The older boot's crash is before the mark: this boot's text shows no reason.
    assert boot_crash_reason(read_since(log, mark)) is None
    assert read_since(tmp_path / "missing.log", 0) == ""
    assert _boot.size(tmp_path / "missing.log") == 0


def test_the_module_example_holds() -> None:
    assert doctest.testmod(_boot).failed == 0


def test_a_table_wait_that_was_answered_is_not_a_wait() -> None:
    wait = "2026-12-07 01:53:55.980635+00:00 [info] <0.223.0> Waiting for Mnesia tables for 30000 ms, 9 retries left"
    got = "2026-12-07 01:53:55.990000+00:00 [info] <0.223.0> Successfully synced tables from a peer"
    assert _boot.waiting_for_tables_since(f"{wait}\n{got}\n") is None
    assert _boot.waiting_for_tables_since(f"{wait}\n{got}\n{wait}\n") == 1796608435.980635
    assert _boot.waiting_for_tables_since("Starting broker...\n") is None


def test_a_start_cut_short_names_the_term_the_server_script_printed() -> None:
    # RabbitMQ 4.0 stopped by a SIGTERM while it boots: its stdout has nothing else (seen in a 4.0 demo).
    text = (
        "  Config file(s): /r/n1/rabbitmq.conf\n\n"
        "  Starting broker...{exit,{shutdown,{gen_server,call,[application_controller,"
        "{start_application,rabbit,transient},infinity]}},[{gen_server,call,3,[]}]}\n"
    )
    reason = boot_crash_reason(text)
    assert reason is not None and reason.startswith(
        "{exit,{shutdown,{gen_server,call,[application_controller,"
    )
