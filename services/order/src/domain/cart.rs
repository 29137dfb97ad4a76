//! Cart rules (under construction).
