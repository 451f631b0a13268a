"""mentor-mailer: walks every mentor/mentee pair of a mentoring program through its year by email."""

__version__ = "0.1.0"
