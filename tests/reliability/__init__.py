"""Fault injection: kills, checkpoint-call failures, handler crashes, storage faults, HTTP load and fuzzing.

Quick by default; ``DURABLE_SLOW=1`` runs every scenario with many more faults. Every test
adds to one tally (``chaos.STATS``) printed at the end of the session:
``reliability: runs=.. faults_injected=.. executions_completed=.. lost_updates=0 duplicate_step_executions=0``.
"""
