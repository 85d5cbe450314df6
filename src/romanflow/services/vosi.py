"""VOSI documents: availability and capabilities of each service."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from romanflow.version import __version__

XML_MIME = "text/xml"

_CAP_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
             '<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0" '
             'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
             'xmlns:vr="http://www.ivoa.net/xml/VOResource/v1.0" '
             'xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1" '
             'xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">\n')


def availability() -> bytes:
    """VOSI availability: the service is up."""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<vosi:availability xmlns:vosi="http://www.ivoa.net/xml/VOSIAvailability/v1.0">'
            '<vosi:available>true</vosi:available>'
            f'<vosi:note>romanflow {escape(__version__)} is accepting queries</vosi:note>'
            '</vosi:availability>\n').encode()


def _interface(url: str, role_std: bool = True, params: str = "") -> str:
    role = ' role="std"' if role_std else ""
    return (f'<interface xsi:type="vs:ParamHTTP"{role}><accessURL use="base">{escape(url)}</accessURL>'
            f'{params}</interface>')


def capability(standard_id: str, url: str, extra: str = "", role_std: bool = True, xsi_type: str = "",
               params: str = "") -> str:
    t = f' xsi:type={quoteattr(xsi_type)}' if xsi_type else ""
    return (f'<capability standardID={quoteattr(standard_id)}{t}>{_interface(url, role_std, params)}{extra}'
            '</capability>\n')


def vosi_capabilities(base: str) -> str:
    """The capabilities and availability capabilities of a service at ``base`` (no trailing slash)."""
    return (capability("ivo://ivoa.net/std/VOSI#capabilities", f"{base}/capabilities", role_std=False)
            + capability("ivo://ivoa.net/std/VOSI#availability", f"{base}/availability", role_std=False))


def capabilities(*caps: str) -> bytes:
    return (_CAP_HEAD + "".join(caps) + "</vosi:capabilities>\n").encode()


def param_xml(name: str, description: str, datatype: str = "char", std: bool = True) -> str:
    return (f'<param std="{"true" if std else "false"}"><name>{escape(name)}</name>'
            f'<description>{escape(description)}</description><dataType>{escape(datatype)}</dataType></param>')
