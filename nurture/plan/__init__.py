"""Planning: which prospect gets which mail when, decided before anything is sent.

It owns campaigns (:mod:`~nurture.plan.campaigns`: TOML files -> frozen objects), segments and mailability
(:mod:`~nurture.plan.segments`), the calendar (:mod:`~nurture.plan.cadence`: send days, hours, holidays) and the
planner (:mod:`~nurture.plan.planner`: segment members -> decisions -> pending deliveries).

It may import people, score, track, store and core; never compose, checks, deliver or anything above. What the
planner has to tell its caller goes through the ``PlanSink`` protocol it defines (the sending run's report
implements it), not through an import of the caller.
"""
