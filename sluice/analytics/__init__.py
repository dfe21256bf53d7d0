"""The analytics stage: reads the warehouse only (identity map, email reports, attribution).

The CLI, the JSON API and the console all call `service.run_report`; nothing here writes a loaded table.
"""
