"""Without any fault the checker finds nothing, and the flow does real work: the control scenario."""

from faults.flow import FlowConfig
from faults.scenario import report, run_scenario


async def test_a_flow_without_faults_keeps_every_promise(fault_stack) -> None:
    _, problems = await run_scenario(fault_stack, FlowConfig(seed=1, duration_s=4), label="calm")
    assert not problems, report(problems)
