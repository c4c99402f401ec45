/* Reads a few patient/study attributes from a DICOM file's header in the browser,
   so the upload form can show what the files say before anything is sent.
   Display only: the server reads the files itself, and a value shown here is
   never sent back. Any file this small reader does not understand gives null. */
(function () {
  "use strict";

  var HEAD_BYTES = 256 * 1024;
  var WANTED = {
    "00080005": "charset",
    "00080020": "studyDate",
    "00100010": "patientName",
    "00100020": "patientId",
    "0020000D": "studyUid",
  };
  var LAST_WANTED = 0x0020000d;
  var LONG_VRS = { OB: 1, OD: 1, OF: 1, OL: 1, OV: 1, OW: 1, SQ: 1, SV: 1, UC: 1, UN: 1, UR: 1, UT: 1, UV: 1 };
  var UNDEFINED = 0xffffffff;

  function hex(group, element) {
    return ("0000" + group.toString(16)).slice(-4).toUpperCase() + ("0000" + element.toString(16)).slice(-4).toUpperCase();
  }

  function text(view, offset, length) {
    var out = "";
    for (var i = 0; i < length; i++) out += String.fromCharCode(view.getUint8(offset + i));
    return out.replace(/[\0 ]+$/, "").trim();
  }

  function Reader(view, offset, explicit) {
    this.view = view;
    this.pos = offset;
    this.explicit = explicit;
  }

  // One data element header; throws RangeError past the end of what was read.
  Reader.prototype.header = function () {
    var v = this.view;
    var group = v.getUint16(this.pos, true);
    var element = v.getUint16(this.pos + 2, true);
    this.pos += 4;
    if (group === 0xfffe) {  // item and delimiters never carry a VR
      var itemLength = v.getUint32(this.pos, true);
      this.pos += 4;
      return { group: group, element: element, vr: null, length: itemLength };
    }
    var vr = null;
    var length;
    if (this.explicit) {
      vr = String.fromCharCode(v.getUint8(this.pos), v.getUint8(this.pos + 1));
      if (LONG_VRS[vr]) {
        length = v.getUint32(this.pos + 4, true);
        this.pos += 8;
      } else {
        length = v.getUint16(this.pos + 2, true);
        this.pos += 4;
      }
    } else {
      length = v.getUint32(this.pos, true);
      this.pos += 4;
    }
    return { group: group, element: element, vr: vr, length: length };
  };

  // Skips an undefined-length sequence: items, each either sized or ended by a delimiter.
  Reader.prototype.skipSequence = function () {
    for (;;) {
      var item = this.header();
      if (item.group === 0xfffe && item.element === 0xe0dd) return;
      if (item.group !== 0xfffe || item.element !== 0xe000) throw new Error("malformed sequence");
      if (item.length !== UNDEFINED) {
        this.pos += item.length;
        continue;
      }
      for (;;) {
        var inner = this.header();
        if (inner.group === 0xfffe && inner.element === 0xe00d) break;
        this.skipValue(inner);
      }
    }
  };

  Reader.prototype.skipValue = function (h) {
    if (h.length === UNDEFINED) {
      // Undefined length is a sequence (or encapsulated pixel data, which ends the header anyway).
      this.skipSequence();
    } else {
      this.pos += h.length;
    }
  };

  function parse(buffer) {
    var view = new DataView(buffer);
    if (view.byteLength < 140 || text(view, 128, 4) !== "DICM") return null;
    // File meta information: always explicit VR little endian.
    var meta = new Reader(view, 132, true);
    var syntax = null;
    while (meta.pos < view.byteLength - 8 && view.getUint16(meta.pos, true) === 0x0002) {
      var m = meta.header();
      if (m.element === 0x0010) syntax = text(view, meta.pos, m.length);
      meta.pos += m.length;
    }
    if (syntax === "1.2.840.10008.1.2.2" || syntax === "1.2.840.10008.1.2.1.99") return null;  // big endian, deflated
    var reader = new Reader(view, meta.pos, syntax !== "1.2.840.10008.1.2");
    var found = {};
    while (reader.pos < view.byteLength - 8) {
      var h = reader.header();
      var tag = (h.group << 16) | h.element;
      if (tag >>> 0 > LAST_WANTED) break;
      var key = WANTED[hex(h.group, h.element)];
      if (key && h.length !== UNDEFINED) {
        found[key] = new Uint8Array(buffer, reader.pos, h.length);
        reader.pos += h.length;
      } else {
        reader.skipValue(h);
      }
    }
    if (!(found.studyUid || found.patientId || found.patientName)) return null;
    var charset = found.charset ? decode(found.charset, "latin1") : "";
    // ISO_IR 192 is UTF-8; the default and the common Latin sets read well enough as Latin-1.
    var encoding = charset.indexOf("ISO_IR 192") !== -1 ? "utf-8" : "latin1";
    var out = {};
    ["studyDate", "patientName", "patientId", "studyUid"].forEach(function (k) {
      if (found[k]) out[k] = decode(found[k], encoding) || null;
    });
    return out;
  }

  function decode(bytes, encoding) {
    return new TextDecoder(encoding).decode(bytes).replace(/[\0 ]+$/, "").trim();
  }

  function safeParse(buffer) {
    try {
      return parse(buffer);
    } catch (error) {
      return null;  // truncated header or an encoding this reader does not know
    }
  }

  function peekDicom(file) {
    return file.slice(0, HEAD_BYTES).arrayBuffer().then(safeParse);
  }

  function isoDate(dicomDate) {
    var match = /^(\d{4})(\d{2})(\d{2})$/.exec(dicomDate || "");
    return match ? match[1] + "-" + match[2] + "-" + match[3] : null;
  }

  window.Fetal = window.Fetal || {};
  window.Fetal.peekDicom = peekDicom;
  window.Fetal.parseDicomHeader = safeParse;
  window.Fetal.dicomDateToIso = isoDate;
})();
