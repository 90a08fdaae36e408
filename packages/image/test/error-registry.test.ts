import { CodedError } from '@flotilla/protocol';
import { describe, expect, it } from 'vitest';
import { IMAGE_ERRORS, ImageError, ioError, isImageError } from '../src/index.js';

describe('image error registry', () => {
  it('gives every code the FLOTILLA_ERR_ prefix, an HTTP status, a message and a hint', () => {
    for (const [code, e] of Object.entries(IMAGE_ERRORS)) {
      expect(code).toMatch(/^FLOTILLA_ERR_(IMAGE|BUNDLE)_[A-Z_]+$/);
      expect(e.status).toBeGreaterThanOrEqual(400);
      expect(e.status).toBeLessThan(600);
      expect(e.message.length).toBeGreaterThan(3);
      expect(e.hint.length).toBeGreaterThan(3);
    }
  });

  it('raises ImageErrors with code, status, hint, component, details and cause', () => {
    const err = new ImageError('FLOTILLA_ERR_BUNDLE_TRUNCATED', 'at byte 42', { details: { offset: 42 } });
    expect(err).toBeInstanceOf(ImageError);
    expect(err).toBeInstanceOf(CodedError);
    expect(err).toMatchObject({
      name: 'ImageError',
      status: 400,
      component: 'image',
      details: { offset: 42 },
    });
    expect(err.message).toBe('bundle ends early: at byte 42');
    expect(isImageError(err, 'FLOTILLA_ERR_BUNDLE_TRUNCATED')).toBe(true);
    expect(isImageError(err, 'FLOTILLA_ERR_IMAGE_IO')).toBe(false);
  });

  it('wraps an fs error as FLOTILLA_ERR_IMAGE_IO and keeps an already coded one', () => {
    const enoent = Object.assign(new Error('no such file'), { code: 'ENOENT' });
    const wrapped = ioError('reading x', enoent);
    expect(wrapped).toMatchObject({ code: 'FLOTILLA_ERR_IMAGE_IO', cause: enoent });
    expect(wrapped.message).toContain('reading x (ENOENT)');
    const coded = new ImageError('FLOTILLA_ERR_IMAGE_TOO_LARGE');
    expect(ioError('writing y', coded)).toBe(coded);
  });
});
