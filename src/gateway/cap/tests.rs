use super::*;

const THUNDERSTORM: &str = include_str!("../../../tests/data/cap/thunderstorm.xml");
const EARTHQUAKE_UPDATE: &str = include_str!("../../../tests/data/cap/earthquake-update.xml");
const ADVISORY: &str = include_str!("../../../tests/data/cap/advisory.xml");
const AMBER: &str = include_str!("../../../tests/data/cap/amber-two-languages.xml");
const NATIONAL_GALE: &str = include_str!("../../../tests/data/cap/national-gale.xml");

/// 2003-06-17T14:57:00-07:00, when the thunderstorm warning was sent.
const STORM_SENT: i64 = 1_055_887_020;

fn group(name: &str) -> Address {
    Address::parse(&format!("group:{name}")).unwrap()
}

/// `xml` with `from` replaced by `to` (exactly once).
fn edit(xml: &str, from: &str, to: &str) -> String {
    assert_eq!(xml.matches(from).count(), 1, "{from:?}");
    xml.replace(from, to)
}

fn refused(xml: &str) -> CapError {
    match parse(xml) {
        Ok(a) => panic!("accepted: {a:?}"),
        Err(e) => e,
    }
}

#[test]
fn the_thunderstorm_warning_parses_and_maps_to_a_flash_message_for_its_county() {
    let a = parse(THUNDERSTORM).unwrap();
    assert_eq!(a.identifier, "KSTO1055887203");
    assert_eq!(a.sender, "KSTO@NWS.NOAA.GOV");
    assert_eq!(a.sent, STORM_SENT);
    assert_eq!((a.status, a.msg_type), (Status::Actual, MsgType::Alert));
    assert_eq!(a.title(), "SEVERE THUNDERSTORM WARNING");
    let info = &a.infos[0];
    assert_eq!((info.urgency, info.severity), (Urgency::Immediate, Severity::Severe));
    assert_eq!(info.expires.map(|(t, _)| t), Some(1_055_890_800));
    assert_eq!(info.areas[0].geocodes.len(), 3);

    let mut m = Mapping::default();
    m.areas.push(AreaRule {
        geocode: Some("006109".into()),
        value_name: Some("SAME".into()),
        name: None,
        to: group("tuolumne"),
    });
    let plan = m.plan(&a, STORM_SENT).unwrap();
    assert_eq!(plan.status, TrafficStatus::Actual);
    assert_eq!(plan.precedence, Precedence::Flash, "Immediate and Severe");
    assert_eq!(plan.lifetime, Duration::from_secs(63 * 60), "until it expires");
    assert_eq!(plan.to, vec![group("tuolumne")]);
    // No rule matches: the default address.
    let plan = Mapping::default().plan(&a, STORM_SENT).unwrap();
    assert_eq!(plan.to, vec![all_nodes()]);
}

#[test]
fn the_specifications_other_examples_parse_an_advisory_and_a_two_language_alert() {
    let a = parse(ADVISORY).unwrap();
    assert_eq!((a.identifier.as_str(), a.sent), ("43b080713727", 1_049_312_341));
    assert_eq!(a.title(), "Homeland Security Sets Code ORANGE");
    let plan = Mapping::default().plan(&a, a.sent).unwrap();
    assert_eq!((plan.precedence, plan.lifetime), (Precedence::Flash, Duration::from_secs(86_400)));
    // A resource needs its media type (new in 1.2).
    let e = refused(&edit(ADVISORY, "<mimeType>image/gif</mimeType>", ""));
    assert_eq!((e.element.as_str(), e.message.as_str()), ("resource", "<mimeType> is required"));

    let a = parse(AMBER).unwrap();
    assert_eq!(a.infos.len(), 2);
    assert_eq!(a.infos[1].event, "Abducción de Niño");
    let mut m = Mapping::default();
    m.areas.push(AreaRule {
        geocode: Some("006037".into()),
        value_name: Some("SAME".into()),
        name: None,
        to: group("los-angeles"),
    });
    // Both languages name the same area: one message.
    assert_eq!(m.plan(&a, a.sent).unwrap().to, vec![group("los-angeles")]);
}

#[test]
fn an_area_maps_by_name_and_several_areas_make_several_addresses() {
    let a = parse(THUNDERSTORM).unwrap();
    let mut m = Mapping::default();
    let desc = "extreme north central tuolumne county in california, extreme northeastern \
                calaveras county in california, southwestern alpine county in california";
    m.areas.push(AreaRule {
        geocode: None,
        value_name: None,
        name: Some(desc.into()),
        to: group("b"),
    });
    m.areas.push(AreaRule {
        geocode: Some("006003".into()),
        value_name: None,
        name: None,
        to: group("a"),
    });
    // A geocode of another scheme does not match a rule that names its scheme.
    m.areas.push(AreaRule {
        geocode: Some("006009".into()),
        value_name: Some("FIPS6".into()),
        name: None,
        to: group("c"),
    });
    assert_eq!(m.plan(&a, STORM_SENT).unwrap().to, vec![group("a"), group("b")]);
}

#[test]
fn an_update_names_what_it_updates() {
    let a = parse(EARTHQUAKE_UPDATE).unwrap();
    assert_eq!(a.msg_type, MsgType::Update);
    assert_eq!(
        a.references,
        vec![Reference {
            sender: "trinet@caltech.edu".into(),
            identifier: "TRI13970876.1".into(),
            sent: "2003-06-11T20:30:00-07:00".into(),
        }]
    );
    let plan = Mapping::default().plan(&a, a.sent).unwrap();
    assert_eq!(plan.precedence, Precedence::Routine, "Past and Minor");
    assert_eq!(plan.lifetime, Duration::from_secs(24 * 3600), "no expires: the default");
}

#[test]
fn the_national_format_is_taken_with_its_names_colours_and_codes() {
    let a = parse(NATIONAL_GALE).unwrap();
    assert_eq!(a.identifier, "41000041600000_20200205105119");
    assert_eq!(a.sender, "河南省气象局");
    assert_eq!(a.sent, 1_580_870_700, "sendTime, with a space and +08:00");
    assert_eq!(a.infos[0].event, "11B06");
    assert_eq!(a.infos[0].severity, Severity::Minor, "Blue");
    assert_eq!(a.infos[0].areas[0].geocodes, vec![(String::new(), "410000000000".into())]);
    let mut m = Mapping::default();
    m.areas.push(AreaRule {
        geocode: Some("410000000000".into()),
        value_name: None,
        name: None,
        to: group("henan"),
    });
    assert_eq!(m.plan(&a, a.sent).unwrap().to, vec![group("henan")]);
    // Its colours, in Chinese too.
    let red = edit(NATIONAL_GALE, "<severity>Blue</severity>", "<severity>红色</severity>");
    assert_eq!(parse(&red).unwrap().infos[0].severity, Severity::Extreme);
    // A Cancel naming the earlier alert by identifier only.
    let cancel = edit(
        &edit(NATIONAL_GALE, "<msgType>Alert</msgType>", "<msgType>Cancel</msgType>"),
        "<scope>Public</scope>",
        "<scope>Public</scope><references>41000041600000_20200204121842</references>",
    );
    let refs = parse(&cancel).unwrap().references;
    assert_eq!(refs[0].sender, "河南省气象局");
    assert_eq!(refs[0].identifier, "41000041600000_20200204121842");
}

#[test]
fn errors_name_the_element_and_its_line() {
    let cases: Vec<(String, u32, &str, &str)> = vec![
        (
            edit(THUNDERSTORM, "<urgency>Immediate</urgency>", "<urgency>Soon</urgency>"),
            13,
            "urgency",
            "\"Soon\" is not one of Immediate",
        ),
        (
            edit(THUNDERSTORM, "  <identifier>KSTO1055887203</identifier>\n", ""),
            2,
            "alert",
            "<identifier> is required",
        ),
        (edit(THUNDERSTORM, "KSTO1055887203", "KSTO 1055887203"), 3, "identifier", "contains ' '"),
        (
            edit(THUNDERSTORM, "2003-06-17T14:57:00-07:00", "2003-06-17T21:57:00Z"),
            5,
            "sent",
            "not Z",
        ),
        (
            edit(THUNDERSTORM, "2003-06-17T14:57:00-07:00", "2003-02-30T14:57:00-07:00"),
            5,
            "sent",
            "not a dateTime",
        ),
        (
            edit(THUNDERSTORM, "<status>Actual</status>", "<status>Real</status>"),
            6,
            "status",
            "is not one of Actual",
        ),
        (
            edit(THUNDERSTORM, "<scope>Public</scope>", "<scope>Restricted</scope>"),
            8,
            "scope",
            "needs <restriction>",
        ),
        (
            edit(THUNDERSTORM, "<scope>Public</scope>", "<scope>Private</scope>"),
            8,
            "scope",
            "needs <addresses>",
        ),
        (
            edit(THUNDERSTORM, "<msgType>Alert</msgType>", "<msgType>Cancel</msgType>"),
            7,
            "msgType",
            "<references>",
        ),
        (
            edit(THUNDERSTORM, "<category>Met</category>", "<category>Weather</category>"),
            10,
            "category",
            "is not one of Geo",
        ),
        (
            edit(THUNDERSTORM, "<certainty>Observed</certainty>", "<certainty>Sure</certainty>"),
            15,
            "certainty",
            "is not one of Observed",
        ),
        (
            edit(THUNDERSTORM, "38.62,-119.89 38.47,-120.14<", "38.62,-119.89 38.47,-120.15<"),
            28,
            "polygon",
            "first and last",
        ),
        (
            edit(THUNDERSTORM, "<contact>", "<colour>red</colour><contact>"),
            25,
            "colour",
            "not an element of <info>",
        ),
        (
            edit(THUNDERSTORM, "<headline>", "<headline>x</headline><headline>"),
            22,
            "headline",
            "only once",
        ),
        (edit(THUNDERSTORM, "</sender>", "</sendr>"), 4, "", "not well-formed"),
        (
            edit(
                THUNDERSTORM,
                "urn:oasis:names:tc:emergency:cap:1.2",
                "urn:oasis:names:tc:emergency:cap:1.1",
            ),
            2,
            "alert",
            "is not CAP 1.2's",
        ),
        (
            edit(EARTHQUAKE_UPDATE, "trinet@caltech.edu,TRI13970876.1,", "trinet@caltech.edu,,"),
            9,
            "references",
            "not sender,identifier,sent",
        ),
        (
            edit(EARTHQUAKE_UPDATE, "32.9525,-115.5527 0", "32.9525,-115.5527"),
            25,
            "circle",
            "not \"latitude,longitude radius\"",
        ),
        ("<feed/>".into(), 1, "feed", "root must be <alert>"),
    ];
    for (xml, line, element, message) in cases {
        let e = refused(&xml);
        assert_eq!((e.line, e.element.as_str()), (line, element), "{e}");
        assert!(e.message.contains(message), "{e} (wanted {message:?})");
        assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
    }
}

#[test]
fn in_the_cap_namespace_the_national_forms_are_refused() {
    let cases = [
        (
            edit(
                THUNDERSTORM,
                "<sent>2003-06-17T14:57:00-07:00</sent>",
                "<sendTime>2003-06-17T14:57:00-07:00</sendTime>",
            ),
            "sendTime",
            "national format",
        ),
        (
            edit(
                THUNDERSTORM,
                "<sender>KSTO@NWS.NOAA.GOV</sender>",
                "<sender>KSTO@NWS.NOAA.GOV</sender><senderCode>1</senderCode>",
            ),
            "senderCode",
            "national format",
        ),
        (
            edit(THUNDERSTORM, "<severity>Severe</severity>", "<severity>Red</severity>"),
            "severity",
            "is not one of Extreme",
        ),
        (
            edit(
                THUNDERSTORM,
                "<certainty>Observed</certainty>",
                "<certainty>VeryLikely</certainty>",
            ),
            "certainty",
            "is not one of Observed, Likely, Possible, Unlikely, Unknown",
        ),
        (
            edit(THUNDERSTORM, "    <certainty>Observed</certainty>\n", ""),
            "info",
            "<certainty> is required",
        ),
        (
            edit(THUNDERSTORM, "2003-06-17T14:57:00-07:00", "2003-06-17 14:57:00-07:00"),
            "sent",
            "has a T",
        ),
        (
            edit(
                EARTHQUAKE_UPDATE,
                "trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00",
                "TRI13970876.1",
            ),
            "references",
            "not sender,identifier,sent",
        ),
        (
            edit(
                THUNDERSTORM,
                "<geocode>\n        <valueName>SAME</valueName>\n        <value>006109</value>\n      </geocode>",
                "<geocode>006109</geocode>",
            ),
            "geocode",
            "<valueName> and <value>",
        ),
    ];
    for (xml, element, message) in cases {
        let e = refused(&xml);
        assert_eq!(e.element, element, "{e}");
        assert!(e.message.contains(message), "{e} (wanted {message:?})");
        // Without a namespace (the national format's way) the same document is taken.
        let bare = xml.replace(" xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"", "");
        assert!(parse(&bare).is_ok(), "{element}: {:?}", parse(&bare));
    }
}

#[test]
fn a_cancel_without_info_is_titled_by_what_it_cancels_and_lifetimes_are_capped() {
    let cancel = edit(
        &EARTHQUAKE_UPDATE.replace("<msgType>Update</msgType>", "<msgType>Cancel</msgType>"),
        &EARTHQUAKE_UPDATE[EARTHQUAKE_UPDATE.find("  <info>").unwrap()
            ..EARTHQUAKE_UPDATE.find("</alert>").unwrap()],
        "",
    );
    let a = parse(&cancel).unwrap();
    assert_eq!(a.title(), "Cancel of TRI13970876.1");
    let storm = parse(THUNDERSTORM).unwrap();
    let m = Mapping { max_lifetime: Duration::from_secs(600), ..Mapping::default() };
    assert_eq!(m.plan(&storm, STORM_SENT).unwrap().lifetime, Duration::from_secs(600));
}

#[test]
fn a_document_type_definition_is_refused_so_no_entity_can_expand() {
    let bomb = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE alert [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;\">]>\n{}",
        THUNDERSTORM.split_once('\n').unwrap().1.replace("BARUFFALDI", "&b;")
    );
    let e = refused(&bomb);
    assert!(e.message.contains("not well-formed"), "{e}");
}

#[test]
fn a_draft_and_an_expired_alert_are_not_sent() {
    let draft = parse(&edit(THUNDERSTORM, "<status>Actual</status>", "<status>Draft</status>"));
    let e = Mapping::default().plan(&draft.unwrap(), STORM_SENT).unwrap_err();
    assert_eq!((e.line, e.element.as_str()), (6, "status"));
    let a = parse(THUNDERSTORM).unwrap();
    let e = Mapping::default().plan(&a, 1_055_890_800).unwrap_err();
    assert_eq!((e.line, e.element.as_str()), (20, "expires"));
    assert!(e.message.contains("2003-06-17T23:00:00+00:00 is in the past"), "{e}");
}

#[test]
fn exercise_test_and_system_alerts_keep_their_status() {
    for (cap, traffic) in [
        ("Exercise", TrafficStatus::Exercise),
        ("Test", TrafficStatus::Test),
        ("System", TrafficStatus::System),
    ] {
        let xml = edit(THUNDERSTORM, "<status>Actual</status>", &format!("<status>{cap}</status>"));
        let plan = Mapping::default().plan(&parse(&xml).unwrap(), STORM_SENT).unwrap();
        assert_eq!(plan.status, traffic);
    }
}

#[test]
fn times_read_with_their_offset_and_write_in_utc() {
    assert_eq!(parse_time("2003-04-02T14:39:01-05:00"), Ok(1_049_312_341));
    assert_eq!(parse_time("2003-04-02T19:39:01-00:00"), Ok(1_049_312_341));
    assert_eq!(parse_time("2003-04-03 03:39:01+08:00"), Ok(1_049_312_341));
    assert_eq!(format_time(1_049_312_341), "2003-04-02T19:39:01+00:00");
    assert_eq!(
        parse_time("2024-02-29T00:00:00+00:00").map(format_time).as_deref(),
        Ok("2024-02-29T00:00:00+00:00")
    );
    for bad in [
        "2003-04-02T14:39:01",
        "2003-04-02T14:39:01.5-05:00",
        "2023-02-29T00:00:00+00:00",
        "2003-04-02T24:00:00+00:00",
        "２００３-04-02T14:39:01-05:00",
    ] {
        assert!(parse_time(bad).is_err(), "{bad}");
    }
}

#[test]
fn the_precedence_table_takes_cells_and_wildcards() {
    let mut t = PrecedenceTable::default();
    assert_eq!(t.get(Urgency::Immediate, Severity::Extreme), Precedence::Flash);
    assert_eq!(t.get(Urgency::Future, Severity::Minor), Precedence::Routine);
    t.set("Future/*", Precedence::Immediate).unwrap();
    t.set("*/Red", Precedence::Flash).unwrap();
    assert_eq!(t.get(Urgency::Future, Severity::Minor), Precedence::Immediate);
    assert_eq!(t.get(Urgency::Past, Severity::Extreme), Precedence::Flash);
    assert!(t.set("Soon/Extreme", Precedence::Flash).unwrap_err().contains("urgency \"Soon\""));
    assert!(t.set("Immediate", Precedence::Flash).is_err());
}
