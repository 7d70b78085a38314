"""Background runs of ``benchmark`` and ``train`` for the *Your cohort* page.

One folder per run (command, log, progress, exit code); the page starts, follows and cancels them.
"""
