//! Transport tests live in the Playwright e2e suite (they need a bridge).
