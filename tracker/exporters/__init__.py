"""Exporters: stored items as calendars for other programs.

`ics` builds iCalendar objects from plain data (pure); `collect` reads items from the database and the
export settings from the site config.
"""
