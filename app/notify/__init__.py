"""Notifications about runs: on a final failure or timeout, and on recovery when asked.

``targets`` parses the schedule's ``notify`` entries, ``bodies`` says what is sent, ``webhook`` and ``email``
send it, ``store`` keeps one row per target and delivery, and ``sender`` ties them together for the ``notify``
actor. A notification that cannot be delivered is recorded as ``failed``; it never changes its run.
"""
