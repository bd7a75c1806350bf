//! CAP 1.2 (and GB/T 35965.1) alerts: parsing, validation and the mapping to a relaymesh
//! message. Pure code: no I/O, time given by the caller.
//!
//! Parsing uses a real XML parser (`roxmltree`: well-formedness, namespaces, no DTDs, so no
//! entity expansion). Validation follows the CAP 1.2 rules that decide whether an alert can
//! be acted on: the required elements, their cardinality, the value sets, the dateTime form
//! (an explicit offset, no `Z`), references and the conditional elements (`restriction` for a
//! Restricted scope, `addresses` for Private). Element order is not enforced. Every error
//! names the element and its line.
//!
//! China's national early-warning format (GB/T 35965.1, as the national release platform
//! writes it) follows CAP's structure with differences, which are accepted too: `sendTime`
//! for `sent` (with a space for the `T`), `eventType` (a hazard code) for `event` with no
//! `category`, an added `senderCode`, `secClassification` and `phone`, the warning colours
//! for severities (`Red` Extreme, `Orange` Severe, `Yellow` Moderate, `Blue` Minor, also as
//! 红色/橙色/黄色/蓝色), `VeryLikely` certainty, `references` holding only the earlier alert's
//! identifier (same sender), a structured `code`, and `geocode` as comma-separated
//! administrative codes rather than name/value pairs. Its namespace is none; a namespace other
//! than CAP 1.2's is refused.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use relaymesh_core::{Address, Precedence, TrafficStatus};

/// The CAP 1.2 namespace.
pub const CAP12_NS: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// The media type of a CAP document.
pub const CONTENT_TYPE: &str = "application/cap+xml";

/// Why an alert was not taken: the element and line it concerns (400 at the API).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapError {
    /// 1-based; 0 when the error is about the document as a whole.
    pub line: u32,
    pub element: String,
    pub message: String,
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.element.is_empty()) {
            (0, true) => write!(f, "{}", self.message),
            (0, false) => write!(f, "<{}>: {}", self.element, self.message),
            (l, true) => write!(f, "line {l}: {}", self.message),
            (l, false) => write!(f, "line {l}: <{}>: {}", self.element, self.message),
        }
    }
}

impl std::error::Error for CapError {}

/// CAP `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Actual,
    Exercise,
    System,
    Test,
    Draft,
}

impl Status {
    /// The relaymesh traffic status it travels as (`None`: a draft, not for sending).
    pub fn traffic(self) -> Option<TrafficStatus> {
        match self {
            Status::Actual => Some(TrafficStatus::Actual),
            Status::Exercise => Some(TrafficStatus::Exercise),
            Status::System => Some(TrafficStatus::System),
            Status::Test => Some(TrafficStatus::Test),
            Status::Draft => None,
        }
    }
}

/// CAP `msgType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgType {
    Alert,
    Update,
    Cancel,
    Ack,
    Error,
}

/// CAP `urgency`, in the order of [`PrecedenceTable`]'s rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urgency {
    Immediate,
    Expected,
    Future,
    Past,
    Unknown,
}

/// CAP `severity`, in the order of [`PrecedenceTable`]'s columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Extreme,
    Severe,
    Moderate,
    Minor,
    Unknown,
}

pub const URGENCIES: [&str; 5] = ["Immediate", "Expected", "Future", "Past", "Unknown"];
pub const SEVERITIES: [&str; 5] = ["Extreme", "Severe", "Moderate", "Minor", "Unknown"];
const STATUSES: [&str; 5] = ["Actual", "Exercise", "System", "Test", "Draft"];
const MSG_TYPES: [&str; 5] = ["Alert", "Update", "Cancel", "Ack", "Error"];
const SCOPES: [&str; 3] = ["Public", "Restricted", "Private"];
const CATEGORIES: [&str; 12] = [
    "Geo",
    "Met",
    "Safety",
    "Security",
    "Rescue",
    "Fire",
    "Health",
    "Env",
    "Transport",
    "Infra",
    "CBRNE",
    "Other",
];
/// CAP 1.2's, then the national format's `VeryLikely`.
const CERTAINTIES: [&str; 6] =
    ["Observed", "Likely", "Possible", "Unlikely", "Unknown", "VeryLikely"];
const RESPONSE_TYPES: [&str; 9] =
    ["Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"];

/// One entry of an alert's `references`: `sender,identifier,sent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub sender: String,
    pub identifier: String,
    pub sent: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Area {
    pub desc: String,
    /// `(valueName, value)` pairs.
    pub geocodes: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    pub event: String,
    pub headline: Option<String>,
    pub urgency: Urgency,
    pub severity: Severity,
    /// Unix seconds, and the line of the `expires` element.
    pub expires: Option<(i64, u32)>,
    pub areas: Vec<Area>,
}

/// A valid alert: what relaymesh needs of it (the document itself travels unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub identifier: String,
    pub sender: String,
    /// Unix seconds.
    pub sent: i64,
    pub status: Status,
    pub msg_type: MsgType,
    pub references: Vec<Reference>,
    pub infos: Vec<Info>,
    /// The line of the `status` element (for a refused draft).
    status_line: u32,
}

impl Alert {
    /// The first headline, else the first event; without an `info`, what it is and what it
    /// refers to (`Cancel of KSTO-1`): a title for a feed.
    pub fn title(&self) -> String {
        let info = self.infos.first();
        info.and_then(|i| i.headline.clone())
            .or_else(|| info.map(|i| i.event.clone()))
            .unwrap_or_else(|| {
                let refs: Vec<&str> =
                    self.references.iter().map(|r| r.identifier.as_str()).collect();
                match self.msg_type {
                    MsgType::Alert => self.identifier.clone(),
                    t => format!("{t:?} of {}", refs.join(", ")),
                }
            })
    }

    /// The latest `expires` of its `info` blocks (Unix seconds).
    pub fn expires(&self) -> Option<i64> {
        self.infos.iter().filter_map(|i| i.expires.map(|(t, _)| t)).max()
    }
}

fn err(doc: &roxmltree::Document, node: roxmltree::Node, message: impl Into<String>) -> CapError {
    CapError {
        line: doc.text_pos_at(node.range().start).row,
        element: node.tag_name().name().to_owned(),
        message: message.into(),
    }
}

/// The canonical (CAP 1.2) name of an element in either dialect.
fn canonical(name: &str) -> &str {
    match name {
        "sendTime" => "sent",
        "eventType" => "event",
        other => other,
    }
}

/// Children of `node` by canonical name, with their nodes.
struct Children<'a, 'i> {
    doc: &'a roxmltree::Document<'i>,
    parent: roxmltree::Node<'a, 'i>,
    list: Vec<(String, roxmltree::Node<'a, 'i>)>,
}

impl<'a, 'i> Children<'a, 'i> {
    /// The element children of `parent`; each must be one of `known` (canonical names).
    fn of(
        doc: &'a roxmltree::Document<'i>,
        parent: roxmltree::Node<'a, 'i>,
        known: &[&str],
    ) -> Result<Self, CapError> {
        let mut list = Vec::new();
        for c in parent.children() {
            if c.is_text() && !c.text().unwrap_or("").trim().is_empty() {
                return Err(err(doc, parent, "text outside the elements it may contain"));
            }
            if !c.is_element() {
                continue;
            }
            if c.tag_name().namespace() != parent.tag_name().namespace() {
                // Elements of other namespaces are extensions CAP does not define: skipped.
                continue;
            }
            let name = canonical(c.tag_name().name());
            if !known.contains(&name) {
                return Err(err(
                    doc,
                    c,
                    format!("not an element of <{}>", parent.tag_name().name()),
                ));
            }
            list.push((name.to_owned(), c));
        }
        Ok(Children { doc, parent, list })
    }

    fn all(&self, name: &str) -> Vec<roxmltree::Node<'a, 'i>> {
        self.list.iter().filter(|(n, _)| n == name).map(|(_, c)| *c).collect()
    }

    fn optional(&self, name: &str) -> Result<Option<roxmltree::Node<'a, 'i>>, CapError> {
        let all = self.all(name);
        if all.len() > 1 {
            return Err(err(self.doc, all[1], "may appear only once"));
        }
        Ok(all.first().copied())
    }

    fn required(&self, name: &str) -> Result<roxmltree::Node<'a, 'i>, CapError> {
        self.optional(name)?.ok_or_else(|| {
            let mut e = err(self.doc, self.parent, format!("<{name}> is required"));
            e.element = self.parent.tag_name().name().to_owned();
            e
        })
    }

    /// The text of a required element, trimmed and not empty.
    fn text(&self, name: &str) -> Result<(String, roxmltree::Node<'a, 'i>), CapError> {
        let node = self.required(name)?;
        Ok((text_of(self.doc, node)?, node))
    }

    fn optional_text(&self, name: &str) -> Result<Option<String>, CapError> {
        self.optional(name)?.map(|n| text_of(self.doc, n)).transpose()
    }
}

fn text_of(doc: &roxmltree::Document, node: roxmltree::Node) -> Result<String, CapError> {
    if node.children().any(|c| c.is_element()) {
        return Err(err(doc, node, "must hold text, not elements"));
    }
    let text: String = node.children().filter_map(|c| c.text()).collect();
    let text = text.trim();
    if text.is_empty() {
        return Err(err(doc, node, "is empty"));
    }
    Ok(text.to_owned())
}

/// `value` must be one of `set` (CAP values, or the GB/T aliases `aliases` maps).
fn one_of(
    doc: &roxmltree::Document,
    node: roxmltree::Node,
    value: &str,
    set: &[&str],
) -> Result<usize, CapError> {
    set.iter()
        .position(|s| *s == value)
        .ok_or_else(|| err(doc, node, format!("{value:?} is not one of {}", set.join(", "))))
}

/// GB/T 35965.1 warning colours as CAP severities.
fn severity_alias(v: &str) -> &str {
    match v {
        "Red" | "红色" | "红" => "Extreme",
        "Orange" | "橙色" | "橙" => "Severe",
        "Yellow" | "黄色" | "黄" => "Moderate",
        "Blue" | "蓝色" | "蓝" => "Minor",
        other => other,
    }
}

/// Characters CAP forbids in `identifier` and `sender` (and so in `references`).
fn check_token(
    doc: &roxmltree::Document,
    node: roxmltree::Node,
    value: &str,
) -> Result<(), CapError> {
    if let Some(c) = value.chars().find(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&')) {
        return Err(err(doc, node, format!("{value:?} contains {c:?}, which CAP forbids here")));
    }
    Ok(())
}

/// Parses and validates a CAP 1.2 (or GB/T 35965.1) alert.
pub fn parse(xml: &str) -> Result<Alert, CapError> {
    let opts = roxmltree::ParsingOptions { allow_dtd: false, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(xml, opts).map_err(|e| CapError {
        line: e.pos().row,
        element: String::new(),
        message: format!("not well-formed XML: {e}"),
    })?;
    let root = doc.root_element();
    if root.tag_name().name() != "alert" {
        return Err(err(&doc, root, "the document is not a CAP alert (its root must be <alert>)"));
    }
    match root.tag_name().namespace() {
        None | Some(CAP12_NS) => {}
        Some(ns) => {
            return Err(err(&doc, root, format!("namespace {ns:?} is not CAP 1.2's ({CAP12_NS})")));
        }
    }
    let doc = &doc;
    if root.tag_name().namespace() == Some(CAP12_NS) {
        check_strict(doc, root)?;
    }
    let c = Children::of(
        doc,
        root,
        &[
            "identifier",
            "sender",
            "sent",
            "status",
            "msgType",
            "source",
            "scope",
            "restriction",
            "addresses",
            "code",
            "note",
            "references",
            "incidents",
            "info",
            "senderCode",
            "secClassification",
            "phone",
        ],
    )?;
    let (identifier, n) = c.text("identifier")?;
    check_token(doc, n, &identifier)?;
    let (sender, n) = c.text("sender")?;
    check_token(doc, n, &sender)?;
    if let Some(n) = c.optional("senderCode")? {
        check_token(doc, n, &text_of(doc, n)?)?;
    }
    let (sent, n) = c.text("sent")?;
    let sent = parse_time(&sent).map_err(|m| err(doc, n, m))?;
    let (status, status_node) = c.text("status")?;
    let status = match one_of(doc, status_node, &status, &STATUSES)? {
        0 => Status::Actual,
        1 => Status::Exercise,
        2 => Status::System,
        3 => Status::Test,
        _ => Status::Draft,
    };
    let (msg_type, n) = c.text("msgType")?;
    let msg_type = match one_of(doc, n, &msg_type, &MSG_TYPES)? {
        0 => MsgType::Alert,
        1 => MsgType::Update,
        2 => MsgType::Cancel,
        3 => MsgType::Ack,
        _ => MsgType::Error,
    };
    let (scope, n) = c.text("scope")?;
    match one_of(doc, n, &scope, &SCOPES)? {
        1 if c.optional("restriction")?.is_none() => {
            return Err(err(doc, n, "a Restricted alert needs <restriction>"));
        }
        2 if c.optional("addresses")?.is_none() => {
            return Err(err(doc, n, "a Private alert needs <addresses>"));
        }
        _ => {}
    }
    for single in ["source", "restriction", "addresses", "note", "incidents"] {
        c.optional_text(single)?;
    }
    let references = match c.optional("references")? {
        Some(n) => parse_references(doc, n, &sender)?,
        None => Vec::new(),
    };
    if matches!(msg_type, MsgType::Update | MsgType::Cancel | MsgType::Ack | MsgType::Error)
        && references.is_empty()
    {
        return Err(err(
            doc,
            c.required("msgType")?,
            "an Update, Cancel, Ack or Error must name what it refers to in <references>",
        ));
    }
    let mut infos = Vec::new();
    for n in c.all("info") {
        infos.push(parse_info(doc, n)?);
    }
    if msg_type == MsgType::Alert && infos.is_empty() {
        return Err(err(doc, root, "an Alert carries at least one <info>"));
    }
    let status_line = doc.text_pos_at(status_node.range().start).row;
    Ok(Alert { identifier, sender, sent, status, msg_type, references, infos, status_line })
}

/// In CAP 1.2's namespace, CAP 1.2 alone: none of the national format's names and forms
/// (which a document without a namespace may use).
fn check_strict(doc: &roxmltree::Document, root: roxmltree::Node) -> Result<(), CapError> {
    const NATIONAL: [&str; 5] =
        ["sendTime", "eventType", "senderCode", "secClassification", "phone"];
    let national =
        "is the national format's, not CAP 1.2's (a document without a namespace may use it)";
    for n in
        root.descendants().filter(|n| n.is_element() && n.tag_name().namespace() == Some(CAP12_NS))
    {
        let name = n.tag_name().name();
        let text = || n.text().unwrap_or("").trim().to_owned();
        if NATIONAL.contains(&name) {
            return Err(err(doc, n, format!("the element {national}")));
        }
        match name {
            "severity" => {
                one_of(doc, n, &text(), &SEVERITIES)?;
            }
            "certainty" => {
                one_of(doc, n, &text(), &CERTAINTIES[..5])?;
            }
            "sent" | "effective" | "onset" | "expires"
                if text().as_bytes().get(10) == Some(&b' ') =>
            {
                return Err(err(
                    doc,
                    n,
                    format!("{:?}: a CAP 1.2 dateTime has a T between date and time", text()),
                ));
            }
            "references" => {
                if let Some(e) = text().split_whitespace().find(|e| !e.contains(',')) {
                    return Err(err(doc, n, format!("{e:?} is not sender,identifier,sent")));
                }
            }
            "geocode" if !n.children().any(|c| c.is_element()) => {
                return Err(err(doc, n, "needs <valueName> and <value>"));
            }
            "info" => {
                for required in ["category", "certainty"] {
                    if !n.children().any(|c| c.has_tag_name((CAP12_NS, required))) {
                        return Err(err(doc, n, format!("<{required}> is required")));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn parse_references(
    doc: &roxmltree::Document,
    node: roxmltree::Node,
    own_sender: &str,
) -> Result<Vec<Reference>, CapError> {
    let text = text_of(doc, node)?;
    let mut refs = Vec::new();
    for entry in text.split_whitespace() {
        if !entry.contains(',') {
            // The national format's form: the identifier of the sender's own earlier alert.
            refs.push(Reference {
                sender: own_sender.to_owned(),
                identifier: entry.to_owned(),
                sent: String::new(),
            });
            continue;
        }
        let parts: Vec<&str> = entry.split(',').collect();
        let [sender, identifier, sent] = parts[..] else {
            return Err(err(doc, node, format!("{entry:?} is not sender,identifier,sent")));
        };
        parse_time(sent).map_err(|m| err(doc, node, format!("{entry:?}: {m}")))?;
        if sender.is_empty() || identifier.is_empty() {
            return Err(err(doc, node, format!("{entry:?} is not sender,identifier,sent")));
        }
        refs.push(Reference {
            sender: sender.to_owned(),
            identifier: identifier.to_owned(),
            sent: sent.to_owned(),
        });
    }
    Ok(refs)
}

fn parse_info(doc: &roxmltree::Document, node: roxmltree::Node) -> Result<Info, CapError> {
    let c = Children::of(
        doc,
        node,
        &[
            "language",
            "category",
            "event",
            "responseType",
            "urgency",
            "severity",
            "certainty",
            "audience",
            "eventCode",
            "effective",
            "onset",
            "expires",
            "senderName",
            "headline",
            "description",
            "instruction",
            "web",
            "contact",
            "parameter",
            "resource",
            "area",
        ],
    )?;
    let categories = c.all("category");
    let national = c.all("event").iter().any(|n| n.tag_name().name() == "eventType");
    if categories.is_empty() && !national {
        return Err(err(doc, node, "<category> is required"));
    }
    for n in categories {
        one_of(doc, n, &text_of(doc, n)?, &CATEGORIES)?;
    }
    for n in c.all("responseType") {
        one_of(doc, n, &text_of(doc, n)?, &RESPONSE_TYPES)?;
    }
    let (event, _) = c.text("event")?;
    let (urgency, n) = c.text("urgency")?;
    let urgency = match one_of(doc, n, &urgency, &URGENCIES)? {
        0 => Urgency::Immediate,
        1 => Urgency::Expected,
        2 => Urgency::Future,
        3 => Urgency::Past,
        _ => Urgency::Unknown,
    };
    let (severity, n) = c.text("severity")?;
    let severity = match one_of(doc, n, severity_alias(&severity), &SEVERITIES)? {
        0 => Severity::Extreme,
        1 => Severity::Severe,
        2 => Severity::Moderate,
        3 => Severity::Minor,
        _ => Severity::Unknown,
    };
    // Required by CAP 1.2; GB/T 35965.1 alerts may leave it out.
    if let Some(n) = c.optional("certainty")? {
        one_of(doc, n, &text_of(doc, n)?, &CERTAINTIES)?;
    }
    for n in ["effective", "onset"] {
        if let Some(n) = c.optional(n)? {
            parse_time(&text_of(doc, n)?).map_err(|m| err(doc, n, m))?;
        }
    }
    let expires = match c.optional("expires")? {
        Some(n) => {
            let t = parse_time(&text_of(doc, n)?).map_err(|m| err(doc, n, m))?;
            Some((t, doc.text_pos_at(n.range().start).row))
        }
        None => None,
    };
    for single in ["language", "audience", "senderName", "description", "instruction", "web"] {
        c.optional(single)?;
    }
    let headline = c.optional_text("headline")?;
    for n in c.all("eventCode").into_iter().chain(c.all("parameter")) {
        value_pair(doc, n)?;
    }
    for n in c.all("resource") {
        let r = Children::of(
            doc,
            n,
            &["resourceDesc", "mimeType", "size", "uri", "derefUri", "digest"],
        )?;
        r.text("resourceDesc")?;
        r.text("mimeType")?;
    }
    let mut areas = Vec::new();
    for n in c.all("area") {
        areas.push(parse_area(doc, n)?);
    }
    Ok(Info { event, headline, urgency, severity, expires, areas })
}

fn value_pair(
    doc: &roxmltree::Document,
    node: roxmltree::Node,
) -> Result<(String, String), CapError> {
    let c = Children::of(doc, node, &["valueName", "value"])?;
    Ok((c.text("valueName")?.0, c.text("value")?.0))
}

fn parse_area(doc: &roxmltree::Document, node: roxmltree::Node) -> Result<Area, CapError> {
    let c = Children::of(
        doc,
        node,
        &["areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling"],
    )?;
    let (desc, _) = c.text("areaDesc")?;
    for n in c.all("polygon") {
        check_polygon(&text_of(doc, n)?).map_err(|m| err(doc, n, m))?;
    }
    for n in c.all("circle") {
        check_circle(&text_of(doc, n)?).map_err(|m| err(doc, n, m))?;
    }
    let mut geocodes = Vec::new();
    for n in c.all("geocode") {
        if n.children().any(|c| c.is_element()) {
            geocodes.push(value_pair(doc, n)?);
        } else {
            // The national format: administrative codes, comma-separated, no name.
            for code in text_of(doc, n)?.split(',').map(str::trim).filter(|c| !c.is_empty()) {
                geocodes.push((String::new(), code.to_owned()));
            }
        }
    }
    if let Some(n) = c.optional("ceiling")?
        && c.optional("altitude")?.is_none()
    {
        return Err(err(doc, n, "<ceiling> needs <altitude>"));
    }
    Ok(Area { desc, geocodes })
}

fn point(s: &str) -> Result<(f64, f64), String> {
    let (lat, lon) = s.split_once(',').ok_or_else(|| format!("{s:?} is not latitude,longitude"))?;
    let lat: f64 = lat.parse().map_err(|_| format!("latitude {lat:?} is not a number"))?;
    let lon: f64 = lon.parse().map_err(|_| format!("longitude {lon:?} is not a number"))?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(format!("{s:?} is not a WGS 84 point"));
    }
    Ok((lat, lon))
}

fn check_polygon(s: &str) -> Result<(), String> {
    let pts = s.split_whitespace().map(point).collect::<Result<Vec<_>, _>>()?;
    if pts.len() < 4 {
        return Err(format!("a polygon has at least 4 points, not {}", pts.len()));
    }
    if pts.first() != pts.last() {
        return Err("a polygon's first and last points must be the same".into());
    }
    Ok(())
}

fn check_circle(s: &str) -> Result<(), String> {
    let (centre, radius) =
        s.split_once(' ').ok_or_else(|| format!("{s:?} is not \"latitude,longitude radius\""))?;
    point(centre)?;
    match radius.trim().parse::<f64>() {
        Ok(r) if r >= 0.0 => Ok(()),
        _ => Err(format!("radius {radius:?} is not a distance in km")),
    }
}

/// A CAP dateTime (`2003-04-02T14:39:01-05:00`) as Unix seconds. The offset is required and
/// `Z` is refused, as CAP 1.2 says; a space instead of `T` is taken (GB/T examples use one).
pub fn parse_time(s: &str) -> Result<i64, String> {
    let bad = || format!("{s:?} is not a dateTime like 2003-04-02T14:39:01-05:00");
    let b = s.as_bytes();
    if s.ends_with('Z') {
        return Err(format!("{s:?}: CAP times give their offset (-00:00 or +00:00), not Z"));
    }
    if b.len() != 25 || !matches!(b[10], b'T' | b' ') || !matches!(b[19], b'+' | b'-') {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let t = &s[r];
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<i64>().map_err(|_| bad())
    };
    for (i, sep) in [(4, b'-'), (7, b'-'), (13, b':'), (16, b':'), (22, b':')] {
        if b[i] != sep {
            return Err(bad());
        }
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let (oh, om) = (num(20..22)?, num(23..25)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > days_in[(mo - 1) as usize] {
        return Err(bad());
    }
    if h > 23 || mi > 59 || sec > 60 || oh > 14 || om > 59 {
        return Err(bad());
    }
    let offset = (oh * 3600 + om * 60) * if b[19] == b'-' { -1 } else { 1 };
    Ok(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds as a CAP dateTime in UTC (`2026-12-05T01:02:03+00:00`).
pub fn format_time(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Urgency x severity to precedence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrecedenceTable(pub [[Precedence; 5]; 5]);

impl Default for PrecedenceTable {
    /// Immediate and at least Severe is FLASH; what needs acting on soon is IMMEDIATE or
    /// PRIORITY; what is future, past or minor is ROUTINE.
    fn default() -> Self {
        use Precedence::{Flash as F, Immediate as I, Priority as P, Routine as R};
        PrecedenceTable([
            // Extreme Severe Moderate Minor Unknown
            [F, F, I, P, P], // Immediate
            [I, I, P, R, R], // Expected
            [P, P, R, R, R], // Future
            [R, R, R, R, R], // Past
            [I, P, P, R, R], // Unknown
        ])
    }
}

impl PrecedenceTable {
    pub fn get(&self, u: Urgency, s: Severity) -> Precedence {
        self.0[u as usize][s as usize]
    }

    /// Sets the cells `"Urgency/Severity"` names; either side may be `*` (every value).
    pub fn set(&mut self, cell: &str, p: Precedence) -> Result<(), String> {
        let (u, s) = cell.split_once('/').ok_or_else(|| {
            format!("{cell:?}: expected \"Urgency/Severity\", e.g. \"Immediate/Extreme\"")
        })?;
        let pick = |v: &str, set: &[&str; 5], what: &str| -> Result<Vec<usize>, String> {
            if v == "*" {
                return Ok((0..5).collect());
            }
            let v = if what == "severity" { severity_alias(v) } else { v };
            set.iter().position(|x| *x == v).map(|i| vec![i]).ok_or_else(|| {
                format!("{cell:?}: {what} {v:?} is not one of {} or *", set.join(", "))
            })
        };
        for ui in pick(u, &URGENCIES, "urgency")? {
            for si in pick(s, &SEVERITIES, "severity")? {
                self.0[ui][si] = p;
            }
        }
        Ok(())
    }
}

/// Which relaymesh address an alert area goes to: by geocode value (with its `valueName`,
/// if given) or by the area's description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AreaRule {
    pub geocode: Option<String>,
    pub value_name: Option<String>,
    pub name: Option<String>,
    pub to: Address,
}

impl AreaRule {
    fn matches(&self, a: &Area) -> bool {
        let by_code = self.geocode.as_ref().is_some_and(|code| {
            a.geocodes.iter().any(|(n, v)| {
                v == code
                    && self.value_name.as_ref().is_none_or(|want| want.eq_ignore_ascii_case(n))
            })
        });
        let by_name = self.name.as_ref().is_some_and(|name| a.desc.eq_ignore_ascii_case(name));
        by_code || by_name
    }
}

/// How alerts become messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    /// Where an alert goes when none of its areas maps to an address.
    pub default_to: Address,
    /// The lifetime of an alert without `expires` (a Cancel, say).
    pub default_lifetime: Duration,
    pub precedence: PrecedenceTable,
    pub areas: Vec<AreaRule>,
    /// The longest lifetime the node takes (`[limits] max_lifetime`): an alert expiring later
    /// lives this long.
    pub max_lifetime: Duration,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            default_to: all_nodes(),
            default_lifetime: Duration::from_secs(24 * 3600),
            precedence: PrecedenceTable::default(),
            areas: Vec::new(),
            max_lifetime: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// `group:all`.
pub fn all_nodes() -> Address {
    Address::parse("group:all").unwrap_or_else(|_| unreachable!("group:all is an address"))
}

/// What an alert becomes: one message per address, all alike.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub status: TrafficStatus,
    pub precedence: Precedence,
    pub lifetime: Duration,
    pub to: Vec<Address>,
    /// No area rule matched: `to` is the default address.
    pub defaulted: bool,
}

impl Mapping {
    /// The messages `alert` becomes at `now` (Unix seconds).
    pub fn plan(&self, alert: &Alert, now: i64) -> Result<Plan, CapError> {
        let Some(status) = alert.status.traffic() else {
            return Err(CapError {
                line: alert.status_line,
                element: "status".into(),
                message: "a Draft is not for dissemination".into(),
            });
        };
        let precedence = alert
            .infos
            .iter()
            .map(|i| self.precedence.get(i.urgency, i.severity))
            .min()
            .unwrap_or(Precedence::Immediate);
        let latest = alert.infos.iter().filter_map(|i| i.expires).max_by_key(|(t, _)| *t);
        let lifetime = match latest {
            None => self.default_lifetime,
            Some((t, line)) if t <= now => {
                return Err(CapError {
                    line,
                    element: "expires".into(),
                    message: format!("{} is in the past", format_time(t)),
                });
            }
            Some((t, _)) => Duration::from_secs((t - now) as u64).min(self.max_lifetime),
        };
        let mut to = BTreeSet::new();
        for area in alert.infos.iter().flat_map(|i| &i.areas) {
            for rule in self.areas.iter().filter(|r| r.matches(area)) {
                to.insert(rule.to.to_string());
            }
        }
        let mut to: Vec<Address> = to.iter().filter_map(|a| Address::parse(a).ok()).collect();
        let defaulted = to.is_empty();
        if defaulted {
            to.push(self.default_to.clone());
        }
        Ok(Plan { status, precedence, lifetime, to, defaulted })
    }
}

#[cfg(test)]
mod tests;
