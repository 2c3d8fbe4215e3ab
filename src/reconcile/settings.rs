//! `[reconcile]`: the raw settings as the config file spells them, and
//! their validation into tolerances, model-name rules and invoice sources.
//! `config` composes this section with the others.

use serde::{Deserialize, Serialize};

use super::invoices::{Adapter, Format};
use super::{ModelRule, ModelRules, Settings, Tolerance};
use crate::error::Problems;
use crate::lake::Location;
use crate::pricing::ModelPattern;

/// `[reconcile]`: tolerances, invoice sources and model-name rules.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawReconcile {
    /// USD; default 0.01 (SPEC 2).
    pub abs_tolerance_usd: Option<f64>,
    /// A share; default 0.005 (0.5%, SPEC 2).
    pub rel_tolerance: Option<f64>,
    /// Logged against computed cost; defaults 0.01 USD and 0.01 (1%).
    pub logged_abs_tolerance_usd: Option<f64>,
    pub logged_rel_tolerance: Option<f64>,
    /// Exit with code 6 when any reconciliation line is not `ok`.
    pub fail_on_mismatch: Option<bool>,
    /// Where invoices are read from; default: one source per adapter under
    /// `inputs.invoices` (`normalized/`, `openai/`, `anthropic/`, `aws_cur/`, `focus/`).
    #[serde(default)]
    pub sources: Vec<RawInvoiceSource>,
    #[serde(default)]
    pub models: Vec<RawModelRule>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawInvoiceSource {
    /// normalized, openai_costs, anthropic_cost_report, aws_cur or focus.
    pub adapter: Option<String>,
    /// An object or a prefix, relative to `inputs.invoices`, or a URL.
    pub path: Option<String>,
    pub provider: Option<String>,
    pub provider_name: Option<String>,
    pub service_name: Option<String>,
    pub model_column: Option<String>,
    pub product_code: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelRule {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub model_regex: Option<String>,
    /// The reconciliation name (`$1` and `${name}` expand for a regex).
    pub name: Option<String>,
}

/// The validated `[reconcile]` section.
#[derive(Debug, Clone, Default)]
pub struct ReconcileConfig {
    pub settings: crate::reconcile::Settings,
    /// Where invoices come from and how to read them.
    pub sources: Vec<(Location, crate::reconcile::invoices::Adapter)>,
    /// The default layout's `inputs.invoices/*.csv` (SPEC 1.4): normalized
    /// CSVs directly under this prefix (not its sub-folders, which have
    /// their own sources). `None` when `[[reconcile.sources]]` are given.
    pub csv_root: Option<Location>,
    pub fail_on_mismatch: bool,
}

impl ReconcileConfig {
    /// The `[reconcile]` section, invoice sources relative to `invoices`;
    /// every problem goes to `p`.
    pub fn validate(raw: &RawReconcile, invoices: &Location, p: &mut Problems) -> ReconcileConfig {
        let decimal = |name: &str,
                       v: Option<f64>,
                       default: rust_decimal::Decimal,
                       p: &mut Problems| match v {
            None => default,
            Some(x) if x.is_finite() && x >= 0.0 => {
                // The shortest text of the float is the decimal the user wrote.
                crate::tabular::parse_decimal(&x.to_string()).unwrap_or(default)
            }
            Some(x) => {
                p.push(format!("reconcile.{name}: {x} must be a number >= 0"));
                default
            }
        };
        let usd6 = |d: rust_decimal::Decimal, name: &str, p: &mut Problems| {
            crate::money::to_scaled(d, 6).unwrap_or_else(|| {
                p.push(format!(
                    "reconcile.{name}: more than 6 decimals of a dollar"
                ));
                0
            })
        };
        let defaults = Settings::default();
        let abs = decimal(
            "abs_tolerance_usd",
            raw.abs_tolerance_usd,
            rust_decimal::Decimal::new(1, 2),
            p,
        );
        let logged_abs = decimal(
            "logged_abs_tolerance_usd",
            raw.logged_abs_tolerance_usd,
            rust_decimal::Decimal::new(1, 2),
            p,
        );
        let invoice = Tolerance {
            abs: usd6(abs, "abs_tolerance_usd", p),
            rel: decimal("rel_tolerance", raw.rel_tolerance, defaults.invoice.rel, p),
        };
        let logged = Tolerance {
            abs: usd6(logged_abs, "logged_abs_tolerance_usd", p),
            rel: decimal(
                "logged_rel_tolerance",
                raw.logged_rel_tolerance,
                defaults.logged.rel,
                p,
            ),
        };
        let models = model_rules(&raw.models, p);
        let (sources, csv_root) = sources(&raw.sources, invoices, p);
        ReconcileConfig {
            settings: Settings {
                invoice,
                logged,
                models: ModelRules(models),
            },
            sources,
            csv_root,
            fail_on_mismatch: raw.fail_on_mismatch.unwrap_or(false),
        }
    }
}

/// `[[reconcile.models]]`, in order.
fn model_rules(raw: &[RawModelRule], p: &mut Problems) -> Vec<ModelRule> {
    let mut models = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let at = format!("reconcile.models[{i}]");
        let pat = ModelPattern::validate(&at, &r.model, &r.model_regex, p);
        let name = match &r.name {
            Some(n) if !n.trim().is_empty() => Some(n.trim().to_string()),
            _ => {
                p.push(format!(
                    "{at}.name: required (the model name both sides reconcile as)"
                ));
                None
            }
        };
        if let (Some(pattern), Some(model)) = (pat, name) {
            models.push(ModelRule {
                provider: r.provider.clone(),
                pattern,
                model,
            });
        }
    }
    models
}

/// The invoice sources: `[[reconcile.sources]]`, or the default layout (one
/// source per adapter under `invoices`, and its top-level CSVs).
fn sources(
    raw: &[RawInvoiceSource],
    invoices: &Location,
    p: &mut Problems,
) -> (Vec<(Location, Adapter)>, Option<Location>) {
    let mut sources = Vec::new();
    let csv_root = raw.is_empty().then(|| invoices.clone());
    if raw.is_empty() {
        for (dir, format) in [
            ("normalized", Format::Normalized),
            ("openai", Format::OpenAiCosts),
            ("anthropic", Format::AnthropicCostReport),
            ("aws_cur", Format::AwsCur),
            ("focus", Format::Focus),
        ] {
            sources.push((invoices.join(dir), Adapter::new(format)));
        }
    }
    for (i, s) in raw.iter().enumerate() {
        let at = format!("reconcile.sources[{i}]");
        let names: Vec<&str> = Format::ALL.iter().map(|(n, _)| *n).collect();
        let format = match s.adapter.as_deref() {
            Some(a) => Format::parse(a).or_else(|| {
                p.push(format!(
                    "{at}.adapter: `{a}` is not one of {}",
                    names.join(", ")
                ));
                None
            }),
            None => {
                p.push(format!("{at}.adapter: required ({})", names.join(", ")));
                None
            }
        };
        let location = match s.path.as_deref() {
            Some(path) => Location::parse(path, Some(invoices))
                .map_err(|e| p.push(format!("{at}.path: {e}")))
                .ok(),
            None => {
                p.push(format!(
                    "{at}.path: required (an object or prefix under inputs.invoices, or a URL)"
                ));
                None
            }
        };
        if let Some(format) = format {
            let only = |name: &str, v: &Option<String>, allowed: bool, p: &mut Problems| {
                if v.is_some() && !allowed {
                    p.push(format!(
                        "{at}.{name}: only for the {} adapter",
                        if name == "product_code" {
                            "aws_cur"
                        } else {
                            "focus"
                        }
                    ));
                }
            };
            only(
                "provider_name",
                &s.provider_name,
                format == Format::Focus,
                p,
            );
            only("service_name", &s.service_name, format == Format::Focus, p);
            only("model_column", &s.model_column, format == Format::Focus, p);
            only("product_code", &s.product_code, format == Format::AwsCur, p);
            if format == Format::Normalized && s.provider.is_some() {
                p.push(format!(
                    "{at}.provider: the normalized CSV names the provider on every line"
                ));
            }
            if let Some(location) = location {
                sources.push((
                    location,
                    Adapter {
                        format,
                        provider: s.provider.clone(),
                        provider_name: s.provider_name.clone(),
                        service_name: s.service_name.clone(),
                        model_column: s.model_column.clone(),
                        product_code: s.product_code.clone(),
                    },
                ));
            }
        }
    }
    (sources, csv_root)
}
