"""The hospital side of medfed: the ClientApp a site runs, its site config and local data handling."""
