"""Reports written to the store: training curves and score tables (``compare``), the cold-start comparison
(``coldstart``), the stability grid (``grid``, ``grid_tables``, ``grid_page``) with its pre-declared claims, outcome
verdicts and paired statistics (``claims``), the stress pilot's page (``pilot_page``), and the one way a report
reaches the store (``publish``)."""
