"""Names used across the core and the shell, defined once. No imports, so the CLI can use them at start-up."""

# Assessment measures and how they are written.
MEASURE_NAMES = {"easi": "EASI", "iga": "IGA", "itch_nrs": "itch NRS", "dlqi": "DLQI", "poem": "POEM"}
# Alert severities, most severe first.
SEVERITIES = ("critical", "warning", "info")
SEVERITY_ORDER = {name: rank for rank, name in enumerate(SEVERITIES)}
# Why a course stopped; the first two exclude the drug from the treatment algorithm's suggestions.
STOP_CATEGORIES = ("failure", "adverse_event", "other")
FAILED_STOP_CATEGORIES = ("failure", "adverse_event")
# How a value no clinical source gives (a clinic's choice, `clinic_default: true`) is shown wherever it is shown.
CLINIC_DEFAULT = "clinic default"
