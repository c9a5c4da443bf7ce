/*
 * tests/unit/cache/esi.c: the ESI subset parser (every construct alone and
 * mixed, the malformed cases that must stay literal, the limits, bodies
 * split at every byte) and the template encoding, whose decoder must
 * refuse every damaged input without crashing (cache/esi.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache/esi.h"

/* ---- helpers ---- */

/* The structural promises of esi.h, for any template. */
static void check_invariants(const struct esi_template *t)
{
    size_t lit = 0, inc = 0;

    assert_true(t->nsegs <= ESI_MAX_SEGMENTS);
    assert_true(t->nsegs == 0 || t->segs != NULL);
    for (size_t i = 0; i < t->nsegs; i++) {
        const struct esi_segment *s = &t->segs[i];
        if (s->kind == ESI_LITERAL) {
            assert_true(s->len >= 1 && s->text != NULL);
            assert_false(i > 0 && t->segs[i - 1].kind == ESI_LITERAL);
            lit += s->len;
        } else {
            assert_int_equal(s->kind, ESI_INCLUDE);
            assert_true(s->src_len >= 1 && s->src_len <= ESI_ATTR_MAX && s->src);
            assert_true(s->alt_len <= ESI_ATTR_MAX);
            assert_true((s->alt == NULL) == (s->alt_len == 0));
            inc++;
        }
    }
    assert_int_equal(lit, t->literal_bytes);
    assert_int_equal(inc, t->nincludes);
    assert_true(inc <= ESI_MAX_INCLUDES);
    if (t->dropped_includes)
        assert_int_equal(t->nincludes, ESI_MAX_INCLUDES);
}

/* The template as text: literals as they are, an include as
 * "{src}", "{src|alt}", with "!" before the "}" for onerror="continue". */
static char *show(const struct esi_template *t)
{
    size_t cap = 64;

    for (size_t i = 0; i < t->nsegs; i++)
        cap += t->segs[i].len + t->segs[i].src_len + t->segs[i].alt_len + 8;
    char *out = malloc(cap);
    size_t n = 0;
    assert_non_null(out);
    for (size_t i = 0; i < t->nsegs; i++) {
        const struct esi_segment *s = &t->segs[i];
        if (s->kind == ESI_LITERAL) {
            memcpy(out + n, s->text, s->len);
            n += s->len;
            continue;
        }
        out[n++] = '{';
        memcpy(out + n, s->src, s->src_len);
        n += s->src_len;
        if (s->alt_len) {
            out[n++] = '|';
            memcpy(out + n, s->alt, s->alt_len);
            n += s->alt_len;
        }
        if (s->onerror_continue)
            out[n++] = '!';
        out[n++] = '}';
    }
    out[n] = '\0';
    return out;
}

static bool same_slice(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static void assert_same(const struct esi_template *a, const struct esi_template *b)
{
    assert_int_equal(a->nsegs, b->nsegs);
    assert_int_equal(a->nincludes, b->nincludes);
    assert_int_equal(a->literal_bytes, b->literal_bytes);
    assert_int_equal(a->dropped_includes, b->dropped_includes);
    assert_int_equal(a->has_esi, b->has_esi);
    for (size_t i = 0; i < a->nsegs; i++) {
        const struct esi_segment *x = &a->segs[i], *y = &b->segs[i];
        assert_int_equal(x->kind, y->kind);
        assert_true(same_slice(x->text, x->len, y->text, y->len));
        assert_true(same_slice(x->src, x->src_len, y->src, y->src_len));
        assert_true(same_slice(x->alt, x->alt_len, y->alt, y->alt_len));
        assert_int_equal(x->onerror_continue, y->onerror_continue);
    }
}

/* Parse doc/len fed in pieces: cuts[0..ncuts) are increasing offsets. */
static struct esi_parser *parse_cut(const char *doc, size_t len, const size_t *cuts, size_t ncuts)
{
    struct esi_parser *p = esi_parser_new();
    size_t at = 0;

    assert_non_null(p);
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        assert_true(esi_parser_feed(p, doc + at, end - at));
        at = end;
    }
    assert_true(esi_parser_finish(p));
    check_invariants(esi_parser_template(p));
    return p;
}

static struct esi_parser *parse_n(const char *doc, size_t len)
{
    return parse_cut(doc, len, NULL, 0);
}

static struct esi_parser *parse(const char *doc)
{
    return parse_n(doc, strlen(doc));
}

/* Parse doc and compare its rendering with want; has_esi as given. */
static void expect_esi(const char *doc, const char *want, bool has_esi)
{
    struct esi_parser *p = parse(doc);
    const struct esi_template *t = esi_parser_template(p);
    char *got = show(t);

    if (strcmp(got, want) != 0 || t->has_esi != has_esi)
        print_error("doc: %s\n", doc);
    assert_string_equal(got, want);
    assert_int_equal(t->has_esi, has_esi);
    free(got);
    esi_parser_free(&p);
    assert_null(p);
}

#define expect(doc, want) expect_esi(doc, want, true)

/* doc is not ESI at all: one literal equal to it, has_esi false. */
static void expect_literal(const char *doc)
{
    struct esi_parser *p = parse(doc);
    const struct esi_template *t = esi_parser_template(p);

    if (t->has_esi || t->nsegs != (doc[0] ? 1u : 0u))
        print_error("doc: %s\n", doc);
    assert_false(t->has_esi);
    assert_int_equal(t->nincludes, 0);
    assert_int_equal(t->nsegs, doc[0] ? 1 : 0);
    if (doc[0]) {
        assert_int_equal(t->segs[0].kind, ESI_LITERAL);
        assert_true(same_slice(t->segs[0].text, t->segs[0].len, doc, strlen(doc)));
    }
    esi_parser_free(&p);
}

/* ---- the constructs ---- */

static void test_literal_only(void **state)
{
    (void)state;
    expect_literal("");
    expect_literal("hello");
    expect_literal("<html><body><p class=\"x\">a &amp; b</p><!-- c --></body></html>");
    expect_literal("<");
    expect_literal("<<<<");
    expect_literal("<e");
    expect_literal("<es");
    expect_literal("<esi");
    expect_literal("<esi:");
    expect_literal("<esi:inc");
    expect_literal("<esi:include");
    expect_literal("<esi:include src=\"a\"");
    expect_literal("<esi:include src=\"a\"/");
    expect_literal("<!");
    expect_literal("<!--");
    expect_literal("<!--es");
    expect_literal("<!--esi");
    expect_literal("-->");
    expect_literal("a --> b -- c - d");
    expect_literal("</esi:include>");
    expect_literal("</esi:remove>");
    expect_literal("</esi:comment>");
}

static void test_include_self_closing(void **state)
{
    (void)state;
    expect("<esi:include src=\"/a\"/>", "{/a}");
    expect("x<esi:include src=\"/a\"/>y", "x{/a}y");
    expect("<esi:include src=\"/a\" alt=\"/b\"/>", "{/a|/b}");
    expect("<esi:include src=\"/a\" alt=\"/b\" onerror=\"continue\"/>", "{/a|/b!}");
    expect("<esi:include onerror=\"continue\" alt=\"/b\" src=\"/a\"/>", "{/a|/b!}");
    expect("<esi:include src=\"/a\" onerror=\"continue\"/>", "{/a!}");
    expect("<esi:include src=\"http://example.com/1.html?a=1&amp;b=2\"/>",
           "{http://example.com/1.html?a=1&b=2}");
    /* two in a row, and the text around them merged */
    expect("a<esi:include src=\"1\"/><esi:include src=\"2\"/>b", "a{1}{2}b");
}

static void test_include_paired(void **state)
{
    (void)state;
    expect("<esi:include src=\"/a\"></esi:include>", "{/a}");
    expect("<esi:include src=\"/a\" alt=\"/b\"> \r\n\t</esi:include>x", "{/a|/b}x");
    expect("<esi:include src=\"/a\"></esi:include  \n>", "{/a}");
    /* content between the tags: not ESI 1.0, so literal */
    expect_esi("<esi:include src=\"/a\">x</esi:include>", "<esi:include src=\"/a\">x</esi:include>",
               false);
    /* no end tag at all */
    expect_esi("<esi:include src=\"/a\">", "<esi:include src=\"/a\">", false);
    expect_esi("<esi:include src=\"/a\">  ", "<esi:include src=\"/a\">  ", false);
    expect_esi("<esi:include src=\"/a\"> </esi:includ", "<esi:include src=\"/a\"> </esi:includ",
               false);
    /* the wrong end tag */
    expect_esi("<esi:include src=\"/a\"></esi:comment>", "<esi:include src=\"/a\"></esi:comment>",
               false);
    expect_esi("<esi:include src=\"/a\"></esi:includes>", "<esi:include src=\"/a\"></esi:includes>",
               false);
    /* a broken pair does not hide the good include that follows */
    expect("<esi:include src=\"/a\">x<esi:include src=\"/b\"/>", "<esi:include src=\"/a\">x{/b}");
    expect("<esi:include src=\"/a\"><esi:include src=\"/b\"/>", "<esi:include src=\"/a\">{/b}");
}

static void test_attribute_syntax(void **state)
{
    (void)state;
    expect("<esi:include src='/a'/>", "{/a}");
    expect("<esi:include src='/a' alt=\"/b\"/>", "{/a|/b}");
    expect("<esi:include src='say \"hi\"'/>", "{say \"hi\"}");
    expect("<esi:include src=\"it's\"/>", "{it's}");
    expect("<esi:include src=\"a>b\"/>", "{a>b}"); /* '>' is allowed in a value */
    expect("<esi:include\tsrc\t=\t\"/a\"\r\n/>", "{/a}");
    expect("<esi:include\n  src = \"/a\"\n  alt = '/b'\n/>", "{/a|/b}");
    expect_literal("<esi:include src=\"/a\" >"); /* no end tag */
    expect("<esi:include src=\"/a\" ></esi:include>", "{/a}");
    /* unknown attributes are ignored, whatever they hold */
    expect("<esi:include x=\"1\" src=\"/a\" data-y='2' max-age=\"60\"/>", "{/a}");
    expect("<esi:include x=\"1\" x=\"1\" src=\"/a\"/>", "{/a}");
    /* empty alt is no alt */
    expect("<esi:include src=\"/a\" alt=\"\"/>", "{/a}");
}

static void test_entities(void **state)
{
    (void)state;
    expect("<esi:include src=\"&amp;&lt;&gt;&quot;&apos;\"/>", "{&<>\"'}");
    expect("<esi:include src=\"&#65;&#x42;&#x63;&#0000100;\"/>", "{ABcd}");
    expect("<esi:include src=\"&#233;&#x20AC;&#x1F600;\"/>",
           "{\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80}");
    /* not references: kept as they are */
    expect("<esi:include src=\"&nbsp;&amp&;&#;&#x;&#X41;&#65&#x4G;\"/>",
           "{&nbsp;&amp&;&#;&#x;&#X41;&#65&#x4G;}");
    /* not XML characters, or too large */
    expect("<esi:include src=\"a&#0;&#x1;&#xD800;&#xFFFE;&#x110000;&#99999999999;\"/>",
           "{a&#0;&#x1;&#xD800;&#xFFFE;&#x110000;&#99999999999;}");
    expect("<esi:include src=\"&amp;amp;\"/>", "{&amp;}"); /* decoded once */
    expect("<esi:include src=\"/a\" alt=\"/b?x=1&amp;y=2\"/>", "{/a|/b?x=1&y=2}");
    /* decoded onerror */
    expect("<esi:include src=\"/a\" onerror=\"&#99;ontinue\"/>", "{/a!}");
}

static void test_onerror(void **state)
{
    (void)state;
    expect("<esi:include src=\"/a\" onerror=\"continue\"/>", "{/a!}");
    expect("<esi:include src=\"/a\" onerror=\"Continue\"/>", "{/a}");
    expect("<esi:include src=\"/a\" onerror=\"CONTINUE\"/>", "{/a}");
    expect("<esi:include src=\"/a\" onerror=\"continue \"/>", "{/a}");
    expect("<esi:include src=\"/a\" onerror=\"abort\"/>", "{/a}");
    expect("<esi:include src=\"/a\" onerror=\"\"/>", "{/a}");
    expect("<esi:include src=\"/a\" ONERROR=\"continue\"/>", "{/a}");
}

static void test_case_sensitive(void **state)
{
    (void)state;
    expect_literal("<ESI:include src=\"/a\"/>");
    expect_literal("<Esi:include src=\"/a\"/>");
    expect_literal("<esi:Include src=\"/a\"/>");
    expect_literal("<esi:INCLUDE src=\"/a\"/>");
    expect_literal("<esi:include SRC=\"/a\"/>"); /* no src */
    expect_literal("<ESI:remove>x</ESI:remove>");
    expect("<!--ESI <esi:comment/> -->x", "<!--ESI  -->x");
    expect("<esi:remove>a</ESI:remove>b</esi:remove>c", "c");
}

static void test_unknown_elements(void **state)
{
    (void)state;
    expect_literal("<esi:vars>$(HTTP_HOST)</esi:vars>");
    expect_literal("<esi:try><esi:attempt>a</esi:attempt><esi:except>b</esi:except></esi:try>");
    expect_literal("<esi:choose><esi:when test=\"1\">a</esi:when><esi:otherwise>b"
                   "</esi:otherwise></esi:choose>");
    expect_literal("<esi:inline name=\"x\" fetchable=\"yes\">a</esi:inline>");
    expect_literal("<esi:includes src=\"/a\"/>");
    expect_literal("<esi:includ src=\"/a\"/>");
    expect_literal("<esi:removed>a</esi:removed>");
    expect_literal("<esi:>x</esi:>");
    expect_literal("<esi: include src=\"/a\"/>");
    /* an include inside an unknown element still works */
    expect("<esi:try><esi:attempt><esi:include src=\"/a\"/></esi:attempt></esi:try>",
           "<esi:try><esi:attempt>{/a}</esi:attempt></esi:try>");
}

static void test_malformed(void **state)
{
    (void)state;
    expect_literal("<esi:include/>");                       /* no src */
    expect_literal("<esi:include alt=\"/b\"/>");            /* no src */
    expect_literal("<esi:include src=\"\"/>");              /* empty src */
    expect_literal("<esi:include src=x/>");                 /* XML needs quotes */
    expect_literal("<esi:include src=/a />");               /* XML needs quotes */
    expect_literal("<esi:include src=\"/a'/>");             /* quotes do not match */
    expect_literal("<esi:include src=\"/a/>");              /* unterminated value */
    expect_literal("<esi:include src=\"/a\"alt=\"/b\"/>");  /* no space between */
    expect_literal("<esi:include src=\"/a\" / >");          /* "/ >" */
    expect_literal("<esi:include src\"/a\"/>");             /* no "=" */
    expect_literal("<esi:include src=\"/a\" alt/>");        /* attribute without value */
    expect_literal("<esi:include src=\"/a\" src=\"/b\"/>"); /* duplicate */
    expect_literal("<esi:include src=\"/a\" alt=\"1\" alt=\"2\"/>");
    expect_literal("<esi:include src=\"/a\" 1x=\"2\"/>"); /* bad attribute name */
    expect_literal("<esi:include src=\"/a\" =\"2\"/>");
    expect_literal("<esi:include src=\"/a\"//>");
    expect_literal("<esi:include src=\"a<b\"/>"); /* '<' in a value */
    expect_literal("<esi:comment text=x/>");
    expect_literal("<esi:remove x>a</esi:remove>");
    expect_literal("unclosed at the end <esi:include src=\"/a\" ");
    expect_literal("unclosed at the end <esi:include src=\"/a");
    /* a broken tag does not hide a good one right after it */
    expect("<esi:include src=x <esi:include src=\"/a\"/>", "<esi:include src=x {/a}");
    expect("<esi:include src=\"<esi:include src='/a'/>\"/>", "<esi:include src=\"{/a}\"/>");
    expect("<esi:<esi:include src=\"/a\"/>", "<esi:{/a}");
    expect("<<esi:include src=\"/a\"/>", "<{/a}");
}

static void test_remove(void **state)
{
    (void)state;
    expect("a<esi:remove>b</esi:remove>c", "ac");
    expect("<esi:remove></esi:remove>", "");
    expect("a<esi:remove/>b", "ab");
    expect("a<esi:remove >b</esi:remove\r\n>c", "ac");
    expect("<esi:remove><a href=\"/x\">x</a></esi:remove>", "");
    /* nested ESI is ignored, and the first end tag closes */
    expect("a<esi:remove><esi:include src=\"/a\"/><!--esi <esi:include src=\"/b\"/> -->"
           "</esi:remove>b",
           "ab");
    expect("a<esi:remove>1<esi:remove>2</esi:remove>3</esi:remove>b", "a3</esi:remove>b");
    /* near misses of the end tag are content */
    expect("a<esi:remove>< </esi:remov </esi:removed> <</esi:remove>b", "ab");
    expect("a<esi:remove>x</esi:remove>b<esi:include src=\"/a\"/>", "ab{/a}");
}

static void test_remove_unterminated(void **state)
{
    (void)state;
    /* from the opening tag on, everything is literal, includes too */
    expect_literal("a<esi:remove>b");
    expect_literal("a<esi:remove>b<esi:include src=\"/a\"/>c</esi:remov");
    expect("<esi:include src=\"/a\"/>x<esi:remove>y<esi:include src=\"/b\"/>",
           "{/a}x<esi:remove>y<esi:include src=\"/b\"/>");
    expect("<esi:remove>1</esi:remove>2<esi:remove>3", "2<esi:remove>3");
}

static void test_comment(void **state)
{
    (void)state;
    expect("a<esi:comment text=\"the header\"/>b", "ab");
    expect("a<esi:comment/>b", "ab");
    expect("a<esi:comment text='x' ></esi:comment>b", "ab");
    expect("a<esi:comment text=\"&bogus; >\"/>b", "ab");
    expect_literal("a<esi:comment text=\"x\">y</esi:comment>b");
}

static void test_esi_wrapper(void **state)
{
    (void)state;
    expect("a<!--esi b-->c", "a bc");
    expect("a<!--esi\n<esi:include src=\"/a\"/>\n-->b", "a\n{/a}\nb");
    expect("<!--esi<esi:include src=\"/a\"/>-->", "{/a}");
    expect("<!--esi <p>x</p> <esi:comment text=\"y\"/> - -- ->-->z", " <p>x</p>  - -- ->z");
    expect("<!--esi ---->", " --");
    expect("<!--esi --->", " -");
    expect("<!--esi <esi:remove>x-->y</esi:remove> -->z", "  z");
    /* a "-->" inside a tag that is not one ends the wrapper */
    expect("<!--esi <esi:include src=\"/a\" -->x", " <esi:include src=\"/a\" x");
    /* "<!--esi" is not nested */
    expect("<!--esi a <!--esi b --> c -->", " a <!--esi b  c -->");
    /* not wrappers */
    expect_literal("<!--esitext-->");
    expect_literal("<!--esi-->");
    expect_literal("<!-- esi <esi:comment -->");
    expect_literal("<!--ESI x-->");
    /* ordinary comments are not tracked: ESI inside them is processed */
    expect("<!-- <esi:include src=\"/a\"/> -->", "<!-- {/a} -->");
}

static void test_esi_wrapper_unterminated(void **state)
{
    (void)state;
    expect_literal("a<!--esi <esi:include src=\"/a\"/> b");
    expect_literal("<!--esi ");
    expect_literal("<!--esi -");
    expect_literal("<!--esi --");
    expect_literal("<!--esi <esi:remove>x</esi:remove> <esi:include src=\"/a\"");
    expect("<!--esi x-->y<!--esi <esi:include src=\"/a\"/>",
           " xy<!--esi <esi:include src=\"/a\"/>");
    expect("<esi:include src=\"/a\"/><!--esi <esi:remove>", "{/a}<!--esi <esi:remove>");
}

static void test_mixed(void **state)
{
    (void)state;
    expect("<html><head><esi:comment text=\"layout\"/></head><body>\n"
           "<esi:include src=\"/header\" onerror=\"continue\"/>\n"
           "<esi:remove><a href=\"/header\">header</a></esi:remove>\n"
           "<!--esi <p>Hello, <esi:include src='/user?id=1&amp;x=2' alt='/anon'></esi:include>"
           "</p> -->\n"
           "<esi:vars>$(HTTP_COOKIE{name})</esi:vars>\n"
           "</body></html>",
           "<html><head></head><body>\n"
           "{/header!}\n"
           "\n"
           " <p>Hello, {/user?id=1&x=2|/anon}</p> \n"
           "<esi:vars>$(HTTP_COOKIE{name})</esi:vars>\n"
           "</body></html>");
}

/* ---- limits ---- */

static void test_include_limit(void **state)
{
    char *doc = malloc(40 * (ESI_MAX_INCLUDES + 2) + 64);
    size_t n = 0;

    (void)state;
    assert_non_null(doc);
    for (int i = 0; i < ESI_MAX_INCLUDES + 2; i++)
        n += (size_t)sprintf(doc + n, "<esi:include src=\"/%d\"/>,", i);
    struct esi_parser *p = parse_n(doc, n);
    const struct esi_template *t = esi_parser_template(p);

    assert_int_equal(t->nincludes, ESI_MAX_INCLUDES);
    assert_int_equal(t->dropped_includes, 2);
    assert_int_equal(t->nsegs, 2 * ESI_MAX_INCLUDES);
    const struct esi_segment *last = &t->segs[t->nsegs - 1];
    assert_int_equal(last->kind, ESI_LITERAL);
    const char *want = ",<esi:include src=\"/256\"/>,<esi:include src=\"/257\"/>,";
    assert_true(same_slice(last->text, last->len, want, strlen(want)));
    assert_true(same_slice(t->segs[2 * 255].src, t->segs[2 * 255].src_len, "/255", 4));
    esi_parser_free(&p);

    /* a remove or comment past the limit still works */
    n += (size_t)sprintf(doc + n, "<esi:remove>x</esi:remove><esi:comment/>y");
    p = parse_n(doc, n);
    t = esi_parser_template(p);
    assert_int_equal(t->dropped_includes, 2);
    last = &t->segs[t->nsegs - 1];
    want = ",<esi:include src=\"/256\"/>,<esi:include src=\"/257\"/>,y";
    assert_true(same_slice(last->text, last->len, want, strlen(want)));
    esi_parser_free(&p);
    free(doc);
}

/* "<esi:include src=SRC x="PAD"/>" exactly total bytes long. */
static char *padded_tag(const char *src, size_t total)
{
    char *doc = malloc(total + 1);
    int head = snprintf(doc, total + 1, "<esi:include src=\"%s\" x=\"", src);

    assert_true(head > 0 && (size_t)head + 3 <= total);
    memset(doc + head, 'p', total - (size_t)head - 3);
    memcpy(doc + total - 3, "\"/>", 4);
    return doc;
}

static void test_tag_limit(void **state)
{
    (void)state;
    char *doc = padded_tag("/a", ESI_TAG_MAX);
    expect(doc, "{/a}");
    free(doc);
    doc = padded_tag("/a", ESI_TAG_MAX + 1);
    expect_literal(doc);
    free(doc);
    /* a pair counts both tags */
    char pair[ESI_TAG_MAX + 64];
    size_t start = ESI_TAG_MAX - strlen("</esi:include>");
    doc = padded_tag("/a", start);
    doc[start - 2] = '"'; /* "/>" -> "\">" : a start tag, same length */
    doc[start - 3] = 'p';
    memcpy(pair, doc, start);
    strcpy(pair + start, "</esi:include>");
    expect(pair, "{/a}");
    strcpy(pair + start, " </esi:include>");
    expect_literal(pair);
    free(doc);
    /* a long unclosed run is literal, and the include after it works */
    char *run = malloc(3 * ESI_TAG_MAX);
    size_t head = (size_t)sprintf(run, "<esi:include src=\"");
    memset(run + head, 'q', 2 * ESI_TAG_MAX);
    strcpy(run + head + 2 * ESI_TAG_MAX, "<esi:include src=\"/b\"/>");
    struct esi_parser *p = parse(run);
    const struct esi_template *t = esi_parser_template(p);
    assert_int_equal(t->nsegs, 2);
    assert_int_equal(t->segs[0].len, strlen(run) - strlen("<esi:include src=\"/b\"/>"));
    assert_true(same_slice(t->segs[1].src, t->segs[1].src_len, "/b", 2));
    esi_parser_free(&p);
    free(run);
}

static void test_attribute_limit(void **state)
{
    char src[ESI_ATTR_MAX + 2], doc[3 * ESI_ATTR_MAX + 200], want[3 * ESI_ATTR_MAX];

    (void)state;
    memset(src, 's', ESI_ATTR_MAX);
    src[ESI_ATTR_MAX] = '\0';
    snprintf(doc, sizeof doc, "<esi:include src=\"%s\" alt=\"%s\"/>", src, src);
    snprintf(want, sizeof want, "{%s|%s}", src, src);
    expect(doc, want);
    /* 2048 decoded bytes from a longer value; one more is too many */
    char *big = malloc(4 * ESI_ATTR_MAX);
    size_t n = (size_t)sprintf(big, "<esi:include src=\"");
    for (int i = 0; i < ESI_ATTR_MAX / 2; i++)
        n += (size_t)sprintf(big + n, "&amp;");
    memset(big + n, 's', ESI_ATTR_MAX / 2);
    n += ESI_ATTR_MAX / 2;
    strcpy(big + n, "\"/>");
    struct esi_parser *p = parse(big);
    assert_int_equal(esi_parser_template(p)->nincludes, 1);
    assert_int_equal(esi_parser_template(p)->segs[0].src_len, ESI_ATTR_MAX);
    esi_parser_free(&p);
    strcpy(big + n, "s\"/>");
    expect_literal(big);
    free(big);
    /* one byte too many, in src or in alt */
    memset(src, 's', ESI_ATTR_MAX + 1);
    src[ESI_ATTR_MAX + 1] = '\0';
    snprintf(doc, sizeof doc, "<esi:include src=\"%s\"/>", src);
    expect_literal(doc);
    snprintf(doc, sizeof doc, "<esi:include src=\"/a\" alt=\"%s\"/>", src);
    expect_literal(doc);
}

/* ---- splits ---- */

/* Every construct, and the malformed cases, in one body: five includes,
 * and an unclosed wrapper at the end. */
#define ALL_BODY                                                                                   \
    "<html>\n<esi:comment text=\"c\"/>a<esi:include src=\"/1\"/>b"                                 \
    "<esi:include src='/2?a=1&amp;b=&#x32;' alt=\"/alt\" onerror=\"continue\"></esi:include>"      \
    "c<esi:remove>gone <esi:include src=\"/x\"/></esi:remove>d"                                    \
    "<!--esi e<esi:include\n\tsrc = \"/3\" />f -- -> -->g"                                         \
    "<ESI:include src=\"/4\"/><esi:include src=x/><esi:vars>v</esi:vars>"                          \
    "<esi:include src=\"/5\">x</esi:include><esi:include><!-- h -->"                               \
    "<esi:<esi:include src=\"/6\"/><<esi:remove/>i</esi:remove>"                                   \
    "<esi:include src=\"/7\"/>"
#define ALL_TAIL "<!--esi j <esi:remove>k"
static const char ALL[] = ALL_BODY ALL_TAIL;

static void test_split_every_byte(void **state)
{
    (void)state;
    size_t len = strlen(ALL);
    struct esi_parser *whole = parse_n(ALL, len);
    const struct esi_template *t = esi_parser_template(whole);

    assert_true(t->has_esi);
    assert_int_equal(t->nincludes, 5);
    for (size_t cut = 0; cut <= len; cut++) {
        struct esi_parser *p = parse_cut(ALL, len, &cut, 1);
        assert_same(t, esi_parser_template(p));
        esi_parser_free(&p);
    }
    for (size_t a = 0; a <= len; a += 7) {
        for (size_t b = a; b <= len; b += 3) {
            size_t cuts[2] = {a, b};
            struct esi_parser *p = parse_cut(ALL, len, cuts, 2);
            assert_same(t, esi_parser_template(p));
            esi_parser_free(&p);
        }
    }
    esi_parser_free(&whole);
}

static void test_split_one_byte_pieces(void **state)
{
    (void)state;
    size_t len = strlen(ALL);
    size_t *cuts = malloc(len * sizeof *cuts);
    struct esi_parser *whole = parse_n(ALL, len);

    for (size_t i = 0; i < len; i++)
        cuts[i] = i;
    struct esi_parser *p = parse_cut(ALL, len, cuts, len);
    assert_same(esi_parser_template(whole), esi_parser_template(p));
    esi_parser_free(&p);

    /* every piece empty in between, too */
    p = esi_parser_new();
    for (size_t i = 0; i < len; i++) {
        assert_true(esi_parser_feed(p, ALL + i, 0));
        assert_true(esi_parser_feed(p, ALL + i, 1));
    }
    assert_true(esi_parser_feed(p, NULL, 0));
    assert_true(esi_parser_finish(p));
    assert_same(esi_parser_template(whole), esi_parser_template(p));
    esi_parser_free(&p);
    esi_parser_free(&whole);
    free(cuts);
}

static uint32_t rng(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static void test_split_random(void **state)
{
    (void)state;
    /* ALL several times over, with a tag near the size limit in it */
    size_t len = 0, cap = 8 * sizeof ALL + ESI_TAG_MAX + 64;
    char *doc = malloc(cap);
    char *pad = padded_tag("/big", ESI_TAG_MAX);
    for (int i = 0; i < 4; i++) {
        memcpy(doc + len, ALL_BODY, strlen(ALL_BODY));
        len += strlen(ALL_BODY);
    }
    memcpy(doc + len, pad, ESI_TAG_MAX);
    len += ESI_TAG_MAX;
    memcpy(doc + len, ALL, strlen(ALL));
    len += strlen(ALL);
    free(pad);

    struct esi_parser *whole = parse_n(doc, len);
    const struct esi_template *t = esi_parser_template(whole);
    assert_int_equal(t->nincludes, 4 * 5 + 1 + 5);

    uint32_t seed = 0x2545f491;
    size_t cuts[64];
    for (int round = 0; round < 300; round++) {
        size_t ncuts = rng(&seed) % 64;
        for (size_t i = 0; i < ncuts; i++)
            cuts[i] = rng(&seed) % (len + 1);
        for (size_t i = 1; i < ncuts; i++) /* insertion sort */
            for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
                size_t x = cuts[j];
                cuts[j] = cuts[j - 1];
                cuts[j - 1] = x;
            }
        struct esi_parser *p = parse_cut(doc, len, cuts, ncuts);
        assert_same(t, esi_parser_template(p));
        esi_parser_free(&p);
    }
    esi_parser_free(&whole);
    free(doc);
}

/* ---- the encoding ---- */

static unsigned char *encode(const struct esi_template *t, size_t *len)
{
    size_t n = esi_template_encode(t, NULL, 0);
    unsigned char *out = malloc(n ? n : 1);

    assert_non_null(out);
    assert_int_equal(esi_template_encode(t, out, n), n);
    *len = n;
    return out;
}

/* decode(encode(t)) is t, and encoding that again gives the same bytes. */
static void round_trip(const struct esi_template *t)
{
    size_t len, len2;
    unsigned char *enc = encode(t, &len);
    struct esi_template d;
    char err[128] = "";

    assert_true(esi_template_is_encoded(enc, len));
    if (!esi_template_decode(enc, len, &d, err, sizeof err))
        fail_msg("decode: %s", err);
    check_invariants(&d);
    assert_same(t, &d);
    unsigned char *enc2 = encode(&d, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(enc, enc2, len);
    for (size_t i = 0; i < d.nsegs; i++) { /* zero copy */
        const char *span = d.segs[i].kind == ESI_LITERAL ? d.segs[i].text : d.segs[i].src;
        assert_true((const unsigned char *)span >= enc && (const unsigned char *)span < enc + len);
    }
    esi_template_clear(&d);
    assert_null(d.segs);
    assert_int_equal(d.nsegs, 0);
    free(enc);
    free(enc2);
}

static void test_round_trip(void **state)
{
    (void)state;
    const char *docs[] = {
        "",
        "plain",
        "<esi:include src=\"/a\"/>",
        "<esi:include src=\"/a\" alt=\"/b\"/>x",
        ALL,
        "<esi:remove>x</esi:remove>",
        "x<esi:include src=\"/a\" onerror=\"continue\"/>",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        struct esi_parser *p = parse(docs[i]);
        round_trip(esi_parser_template(p));
        esi_parser_free(&p);
    }
    /* at the include limit, with dropped includes */
    char *doc = malloc(40 * (ESI_MAX_INCLUDES + 3));
    size_t n = 0;
    for (int i = 0; i < ESI_MAX_INCLUDES + 3; i++)
        n += (size_t)sprintf(doc + n, "x<esi:include src=\"/%d\"/>", i);
    struct esi_parser *p = parse_n(doc, n);
    assert_int_equal(esi_parser_template(p)->nsegs, ESI_MAX_SEGMENTS);
    round_trip(esi_parser_template(p));
    esi_parser_free(&p);
    free(doc);
}

static void test_encode_layout(void **state)
{
    (void)state;
    struct esi_parser *p = parse("ab<esi:include src=\"/s\" alt=\"/t\" onerror=\"continue\"/>");
    size_t len;
    unsigned char *enc = encode(esi_parser_template(p), &len);
    static const unsigned char want[] = {
        'T', 'E', 'S', 'I', 1, 1,       /* magic, version, has_esi */
        2,   0,   0,   0,               /* segments */
        1,   0,   0,   0,               /* includes */
        0,   0,   0,   0,               /* dropped */
        2,   0,   0,   0,   0, 0, 0, 0, /* literal bytes */
        0,   2,   0,   0,   0, 0, 0, 0, 0, 'a', 'b', 1, 1, 2, 0, 2, 0, '/', 's', '/', 't',
    };

    assert_int_equal(len, sizeof want);
    assert_memory_equal(enc, want, len);
    /* snprintf semantics: the size whatever cap is, at most cap bytes */
    unsigned char small[10];
    memset(small, 0xee, sizeof small);
    assert_int_equal(esi_template_encode(esi_parser_template(p), small, 7), len);
    assert_memory_equal(small, want, 7);
    assert_int_equal(small[7], 0xee);
    assert_int_equal(esi_template_encode(esi_parser_template(p), NULL, 0), len);
    free(enc);
    esi_parser_free(&p);
}

static void expect_refused(const unsigned char *b, size_t len)
{
    struct esi_template d;
    char err[128] = "";

    memset(&d, 0xa5, sizeof d);
    assert_false(esi_template_decode(b, len, &d, err, sizeof err));
    assert_true(err[0] != '\0');
    assert_null(d.segs);
    assert_int_equal(d.nsegs, 0);
}

static void put_le(unsigned char *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void test_decode_refuses(void **state)
{
    (void)state;
    struct esi_parser *p = parse("ab<esi:include src=\"/s\" alt=\"/t\"/>cd");
    size_t len;
    unsigned char *enc = encode(esi_parser_template(p), &len);
    unsigned char *b = malloc(len + 16);
    /* offsets: header 26; literal "ab" 26..36; include 37..; literal "cd" */
    const size_t inc = 26 + 9 + 2, lit2 = inc + 6 + 4;

    /* truncated anywhere, and one byte too many */
    for (size_t n = 0; n < len; n++) {
        unsigned char *t = malloc(n ? n : 1); /* exact size: ASan sees over-reads */
        memcpy(t, enc, n);
        expect_refused(t, n);
        free(t);
    }
    memcpy(b, enc, len);
    b[len] = 0;
    expect_refused(b, len + 1);
    expect_refused(NULL, 0);

#define MUTATE(stmt)                                                                               \
    do {                                                                                           \
        memcpy(b, enc, len);                                                                       \
        stmt;                                                                                      \
        expect_refused(b, len);                                                                    \
    } while (0)
    MUTATE(b[0] = 'X');                               /* magic */
    MUTATE(b[4] = 2);                                 /* version */
    MUTATE(b[4] = 0);                                 /* version */
    MUTATE(b[5] = 3);                                 /* unknown flag */
    MUTATE(b[5] = 0);                                 /* includes but no has_esi */
    MUTATE(put_le(b + 6, 4, 4));                      /* segment count */
    MUTATE(put_le(b + 6, 2, 4));                      /* segment count */
    MUTATE(put_le(b + 6, 0xffffffff, 4));             /* oversized count */
    MUTATE(put_le(b + 6, ESI_MAX_SEGMENTS + 1, 4));   /* oversized count */
    MUTATE(put_le(b + 10, 2, 4));                     /* include count */
    MUTATE(put_le(b + 10, ESI_MAX_INCLUDES + 1, 4));  /* include count */
    MUTATE(put_le(b + 14, 1, 4));                     /* dropped below the limit */
    MUTATE(put_le(b + 18, 5, 8));                     /* literal bytes */
    MUTATE(put_le(b + 18, UINT64_MAX, 8));            /* literal bytes */
    MUTATE(b[26] = 2);                                /* bad kind */
    MUTATE(b[26] = 0xff);                             /* bad kind */
    MUTATE(b[inc] = 2);                               /* bad kind */
    MUTATE(b[lit2] = 1);                              /* literal read as include */
    MUTATE(put_le(b + 27, 0, 8));                     /* empty literal */
    MUTATE(put_le(b + 27, 3, 8));                     /* length within input, wrong */
    MUTATE(put_le(b + 27, UINT64_MAX, 8));            /* length past the input */
    MUTATE(put_le(b + 27, len, 8));                   /* length past the input */
    MUTATE(b[inc + 1] = 2);                           /* unknown include flag */
    MUTATE(put_le(b + inc + 2, 0, 2));                /* empty src */
    MUTATE(put_le(b + inc + 2, ESI_ATTR_MAX + 1, 2)); /* src too long */
    MUTATE(put_le(b + inc + 4, ESI_ATTR_MAX + 1, 2)); /* alt too long */
    MUTATE(put_le(b + inc + 4, 0xffff, 2));           /* alt past the input */
    MUTATE(put_le(b + lit2 + 1, 3, 8));               /* last literal too long */
#undef MUTATE

    /* two literals in a row, counts otherwise right */
    static const unsigned char two[] = {
        'T', 'E', 'S', 'I', 1, 1, 2, 0, 0, 0, 0, 0, 0,   0, 0, 0, 0, 0, 2, 0, 0, 0, 0,
        0,   0,   0,   0,   1, 0, 0, 0, 0, 0, 0, 0, 'a', 0, 1, 0, 0, 0, 0, 0, 0, 0, 'b',
    };
    expect_refused(two, sizeof two);
    /* has_esi false with more than the body */
    static const unsigned char noesi[] = {
        'T', 'E', 'S', 'I', 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0,   0,
        0,   0,   0,   0,   0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 'x',
    };
    expect_refused(noesi, sizeof noesi);
    /* and what is accepted: an empty template, has_esi false */
    static const unsigned char empty[] = {
        'T', 'E', 'S', 'I', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    };
    struct esi_template d;
    assert_true(esi_template_decode(empty, sizeof empty, &d, NULL, 0));
    assert_int_equal(d.nsegs, 0);
    assert_null(d.segs);
    esi_template_clear(&d);

    assert_false(esi_template_is_encoded((const unsigned char *)"TES", 3));
    assert_false(esi_template_is_encoded((const unsigned char *)"TSR\1", 4));
    assert_false(esi_template_is_encoded(NULL, 0));
    assert_true(esi_template_is_encoded((const unsigned char *)"TESI", 4));

    free(b);
    free(enc);
    esi_parser_free(&p);
}

/* Flip every bit of a small encoding, and set every byte to a few values:
 * decode never crashes and either refuses or gives a template that keeps
 * every promise and encodes back to the same bytes. */
static void test_decode_every_byte_damaged(void **state)
{
    (void)state;
    struct esi_parser *p = parse("ab<esi:include src=\"/s\" alt=\"/t\" onerror=\"continue\"/>c"
                                 "<esi:include src=\"/u\"/>");
    size_t len;
    unsigned char *enc = encode(esi_parser_template(p), &len);
    static const unsigned char values[] = {0, 1, 2, 0x7f, 0x80, 0xff};
    unsigned accepted = 0, tried = 0;

    for (size_t i = 0; i < len; i++) {
        for (unsigned v = 0; v < 8 + sizeof values; v++) {
            unsigned char *b = malloc(len);
            memcpy(b, enc, len);
            b[i] = v < 8 ? (unsigned char)(b[i] ^ (1u << v)) : values[v - 8];
            struct esi_template d;
            tried++;
            if (esi_template_decode(b, len, &d, NULL, 0)) {
                size_t len2;
                check_invariants(&d);
                unsigned char *again = encode(&d, &len2);
                assert_int_equal(len2, len);
                assert_memory_equal(again, b, len);
                free(again);
                esi_template_clear(&d);
                accepted++;
            }
            free(b);
        }
    }
    /* the damage that stays valid is in the bytes of text, src and alt */
    assert_true(accepted > 0 && accepted < tried);
    free(enc);
    esi_parser_free(&p);
}

static void test_random_garbage(void **state)
{
    (void)state;
    uint32_t seed = 12345;
    unsigned char b[128];

    for (int round = 0; round < 20000; round++) {
        size_t len = rng(&seed) % sizeof b;
        for (size_t i = 0; i < len; i++)
            b[i] = (unsigned char)rng(&seed);
        if (round & 1 && len >= 6) /* get past the magic and version */
            memcpy(b, "TESI\1\1", 6);
        struct esi_template d;
        if (esi_template_decode(b, len, &d, NULL, 0)) {
            check_invariants(&d);
            esi_template_clear(&d);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_only),
        cmocka_unit_test(test_include_self_closing),
        cmocka_unit_test(test_include_paired),
        cmocka_unit_test(test_attribute_syntax),
        cmocka_unit_test(test_entities),
        cmocka_unit_test(test_onerror),
        cmocka_unit_test(test_case_sensitive),
        cmocka_unit_test(test_unknown_elements),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_remove_unterminated),
        cmocka_unit_test(test_comment),
        cmocka_unit_test(test_esi_wrapper),
        cmocka_unit_test(test_esi_wrapper_unterminated),
        cmocka_unit_test(test_mixed),
        cmocka_unit_test(test_include_limit),
        cmocka_unit_test(test_tag_limit),
        cmocka_unit_test(test_attribute_limit),
        cmocka_unit_test(test_split_every_byte),
        cmocka_unit_test(test_split_one_byte_pieces),
        cmocka_unit_test(test_split_random),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_encode_layout),
        cmocka_unit_test(test_decode_refuses),
        cmocka_unit_test(test_decode_every_byte_damaged),
        cmocka_unit_test(test_random_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
