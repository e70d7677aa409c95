"""Exporters: stored items as calendars for other programs.

`ics` builds iCalendar objects from plain data (pure); `collect` reads items from the database (the
export settings come with the site's `Settings.export`).
"""
