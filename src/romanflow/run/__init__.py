"""Scale-out: a survey plan as one task graph, run in-process or on Dask distributed.

>>> from romanflow.run import load_plan, run_plan
>>> report = run_plan(load_plan("plan.yaml"), "out/", workers=2)     # doctest: +SKIP
"""

from romanflow.run.calibrate_register import RegisteredFiles, calibrate_and_register
from romanflow.run.executors import DaskExecutor, InProcessExecutor, RunReport, make_executor, run_graph, run_plan
from romanflow.run.graph import Task, TaskGraph, build_graph
from romanflow.run.ledger import Ledger, remove_partials
from romanflow.run.plan import ExposurePlan, SurveyPlan, check_plan, load_plan, plan_from_dict, tiled_plan, write_plan

__all__ = [
    "DaskExecutor", "ExposurePlan", "InProcessExecutor", "Ledger", "RegisteredFiles", "RunReport", "SurveyPlan", "Task",
    "TaskGraph", "build_graph", "calibrate_and_register", "check_plan", "load_plan", "make_executor", "plan_from_dict",
    "remove_partials", "run_graph", "run_plan", "tiled_plan", "write_plan",
]
